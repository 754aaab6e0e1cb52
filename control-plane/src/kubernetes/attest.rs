//! Node attestation with the agent's projected service account token: the API server reviews
//! the token (TokenReview, our audience); it must belong to the agent's service account, and it
//! must be bound to a pod that still exists with the token's pod uid, or to a node. The node is
//! the one the token names (`authentication.kubernetes.io/node-name`), else the pod's
//! `spec.nodeName`; it must exist. The token is not single-use: an agent re-joins with a fresh
//! one after a restart.

mod review;

use ferrule_proto::v1;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use kube::{Api, Client};

use super::pods::mesh;
use crate::config::KubernetesConfig;
use crate::sources::{Attested, Attestor, JoinMethod, JoinRefusal, SourceError};
pub use review::{Binding, BoundPod, check};

/// Why a service account token does not make a node.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error(
        "this control plane runs in Kubernetes mode: nodes attest with the agent's projected service account token (service_account_token, audience {audience}); join tokens are not accepted"
    )]
    JoinToken { audience: String },
    #[error(
        "no credential: in Kubernetes mode the agent sends its projected service account token (audience {audience})"
    )]
    Missing { audience: String },
    #[error("the Kubernetes API server did not authenticate the service account token: {0}")]
    NotAuthenticated(String),
    #[error("the service account token is for audience {got:?}, not {expected}")]
    WrongAudience { expected: String, got: Vec<String> },
    #[error("the token belongs to {user:?}, not to the agent's service account {expected}")]
    WrongServiceAccount { user: String, expected: String },
    #[error(
        "the token is bound to no pod or node (the agent must use a projected service account token)"
    )]
    Unbound,
    #[error("pod {pod} that the token is bound to no longer runs (deleted, replaced or finished)")]
    PodGone { pod: String },
    #[error("pod {pod} that the token is bound to is not scheduled on a node")]
    PodUnscheduled { pod: String },
    #[error("the token names node {token}, but its pod {pod} runs on node {actual}")]
    NodeMismatch {
        token: String,
        pod: String,
        actual: String,
    },
    #[error("node {0} does not exist in the cluster")]
    UnknownNode(String),
    #[error("asking the Kubernetes API server: {0}")]
    Api(#[from] kube::Error),
}

impl From<AttestError> for SourceError {
    fn from(e: AttestError) -> Self {
        let reason = match &e {
            AttestError::JoinToken { .. } | AttestError::Missing { .. } => {
                JoinRefusal::WrongCredential
            }
            AttestError::NotAuthenticated(_) | AttestError::WrongAudience { .. } => {
                JoinRefusal::Unauthenticated
            }
            AttestError::WrongServiceAccount { .. } => JoinRefusal::WrongServiceAccount,
            AttestError::Unbound
            | AttestError::PodGone { .. }
            | AttestError::PodUnscheduled { .. }
            | AttestError::NodeMismatch { .. } => JoinRefusal::UnboundToken,
            AttestError::UnknownNode(_) => JoinRefusal::UnknownNode,
            AttestError::Api(_) => return SourceError::Unavailable(e.to_string()),
        };
        SourceError::refused(reason, e.to_string())
    }
}

#[derive(Clone)]
pub struct ServiceAccountTokens {
    pub client: Client,
    pub config: KubernetesConfig,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountTokens {
    async fn review(&self, token: &str) -> Result<Binding, AttestError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![self.config.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        check(&reviewed.status.unwrap_or_default(), &self.config)
    }

    /// The node the binding names, checked against the pod and the cluster's nodes.
    async fn node(&self, binding: &Binding) -> Result<String, AttestError> {
        let node = match &binding.pod {
            Some(bound) => {
                let pod = format!("{}/{}", self.config.namespace, bound.name);
                let found = Api::<Pod>::namespaced(self.client.clone(), &self.config.namespace)
                    .get_opt(&bound.name)
                    .await?
                    .filter(|p| bound.uid.is_none() || p.metadata.uid == bound.uid)
                    .filter(|p| !mesh::finished(p))
                    .ok_or_else(|| AttestError::PodGone { pod: pod.clone() })?;
                let actual = mesh::node(&found)
                    .ok_or_else(|| AttestError::PodUnscheduled { pod: pod.clone() })?;
                if let Some(token) = binding.node.as_ref().filter(|n| *n != actual) {
                    return Err(AttestError::NodeMismatch {
                        token: token.clone(),
                        pod,
                        actual: actual.to_owned(),
                    });
                }
                actual.to_owned()
            }
            None => binding.node.clone().ok_or(AttestError::Unbound)?,
        };
        Api::<Node>::all(self.client.clone())
            .get_opt(&node)
            .await?
            .ok_or_else(|| AttestError::UnknownNode(node.clone()))?;
        Ok(node)
    }

    async fn attest_token(&self, request: &v1::JoinRequest) -> Result<Attested, AttestError> {
        let audience = || self.config.audience.clone();
        if request.service_account_token.is_empty() {
            return Err(match request.token.is_empty() {
                true => AttestError::Missing {
                    audience: audience(),
                },
                false => AttestError::JoinToken {
                    audience: audience(),
                },
            });
        }
        let binding = self.review(&request.service_account_token).await?;
        let node = self.node(&binding).await?;
        let evidence = match &binding.pod {
            Some(pod) => format!(
                "service account token of pod {}/{}",
                self.config.namespace, pod.name
            ),
            None => format!("service account token bound to node {node}"),
        };
        Ok(Attested {
            node,
            allow: Vec::new(),
            pod_cidrs: Vec::new(),
            evidence,
        })
    }
}

#[tonic::async_trait]
impl Attestor for ServiceAccountTokens {
    fn method(&self) -> JoinMethod {
        JoinMethod::ServiceAccountToken
    }

    async fn attest(&self, request: &v1::JoinRequest) -> Result<Attested, SourceError> {
        Ok(self.attest_token(request).await?)
    }
}
