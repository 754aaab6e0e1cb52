//! What differs between standalone and Kubernetes mode, as four small traits at the edge of one
//! core. The services (`Node.Join`, `Identity.Sign`, `Workloads`, the policy calls of `Admin`)
//! never ask which mode they run in; they ask their source:
//!
//! | question                         | standalone ([`crate::standalone`]) | Kubernetes ([`crate::kubernetes`]) |
//! |----------------------------------|------------------------------------|------------------------------------|
//! | which node is joining?           | single-use join token              | service account token, TokenReview |
//! | may node N obtain identity X?    | the token's allow patterns         | a Pod of X's service account on N  |
//! | what does a node's pod claim do? | registers it in the directory      | nothing: Pod objects are the truth |
//! | where do policies go?            | the config store                   | `AuthorizationPolicy` objects      |

use std::fmt;
use std::sync::Arc;

use ferrule_identity::SpiffeId;
use ferrule_policy::Policy;
use ferrule_proto::v1;
use tonic::Status;

use crate::state::ControlPlane;
use crate::store::NodeRecord;

/// The sources of the running mode.
#[derive(Debug, Clone)]
pub struct Sources {
    pub attestor: Arc<dyn Attestor>,
    pub entitlements: Arc<dyn Entitlements>,
    pub workloads: Arc<dyn WorkloadClaims>,
    pub policies: Arc<dyn PolicyStore>,
}

/// Why a source could not answer, or why a node's credential was refused.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The credential does not prove a node (`UNAUTHENTICATED`).
    #[error("{message}")]
    Refused {
        reason: JoinRefusal,
        message: String,
    },
    /// The authority behind the source did not answer (`UNAVAILABLE`: the caller retries).
    #[error("{0}")]
    Unavailable(String),
    /// The source has not read its authority once yet (`UNAVAILABLE`: the caller retries).
    #[error("the control plane has not finished reading {0} yet; retry shortly")]
    NotSynced(&'static str),
}

impl SourceError {
    pub fn refused(reason: JoinRefusal, message: impl Into<String>) -> Self {
        Self::Refused {
            reason,
            message: message.into(),
        }
    }

    /// The refusal reason for the join metric.
    pub fn reason(&self) -> JoinRefusal {
        match self {
            Self::Refused { reason, .. } => *reason,
            Self::Unavailable(_) | Self::NotSynced(_) => JoinRefusal::Unavailable,
        }
    }
}

impl From<SourceError> for Status {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Refused { .. } => Status::unauthenticated(e.to_string()),
            SourceError::Unavailable(_) | SourceError::NotSynced(_) => {
                Status::unavailable(e.to_string())
            }
        }
    }
}

/// Why a join was refused: the `reason` label of `ferrule_node_joins`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinRefusal {
    /// The credential of the other mode, or none.
    WrongCredential,
    MalformedToken,
    UnknownToken,
    UsedToken,
    ExpiredToken,
    /// The API server did not authenticate the token (expired, wrong audience, bound pod gone).
    Unauthenticated,
    /// Authenticated, but not as the agent's service account.
    WrongServiceAccount,
    /// The token names no pod or node to bind the join to, or the pod does not match it.
    UnboundToken,
    /// The node the token is bound to does not exist.
    UnknownNode,
    InvalidCsr,
    Revoked,
    /// Another node joined with an overlapping pod network after the token was created.
    PodCidrConflict,
    Unavailable,
    /// Over `limits.join.per_source`.
    SourceRateLimited,
    /// Over `limits.join.total`.
    RateLimited,
}

impl JoinRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongCredential => "wrong_credential",
            Self::MalformedToken => "malformed_token",
            Self::UnknownToken => "unknown_token",
            Self::UsedToken => "used_token",
            Self::ExpiredToken => "expired_token",
            Self::Unauthenticated => "unauthenticated",
            Self::WrongServiceAccount => "wrong_service_account",
            Self::UnboundToken => "unbound_token",
            Self::UnknownNode => "unknown_node",
            Self::InvalidCsr => "invalid_csr",
            Self::Revoked => "revoked",
            Self::PodCidrConflict => "pod_cidr_conflict",
            Self::Unavailable => "unavailable",
            Self::SourceRateLimited => "source_rate_limited",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// How a node proves its name at `Node.Join`: `join_token` or `service_account_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinMethod {
    JoinToken,
    ServiceAccountToken,
}

impl JoinMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JoinToken => "join_token",
            Self::ServiceAccountToken => "service_account_token",
        }
    }
}

/// A node whose credential checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub node: String,
    /// Identity patterns the node may obtain beyond its own (standalone); empty otherwise.
    pub allow: Vec<String>,
    /// The node's pod networks (standalone: from its join token); empty otherwise.
    pub pod_cidrs: Vec<ipnet::IpNet>,
    /// What vouched for it, for the log line (`join token <id>`, `pod <ns>/<name>`).
    pub evidence: String,
}

/// Checks the credential of a joining node.
#[tonic::async_trait]
pub trait Attestor: Send + Sync + fmt::Debug + 'static {
    fn method(&self) -> JoinMethod;
    /// The node `request` proves to be. Called after the CSR checked out, so that a broken
    /// agent does not spend a single-use credential.
    async fn attest(&self, request: &v1::JoinRequest) -> Result<Attested, SourceError>;
}

/// Which workload identities a node may obtain. The core ([`crate::auth::entitled`]) has
/// already granted the node its own identity and refused control-plane and admin identities;
/// sources see only workload (and other non-reserved) identities.
pub trait Entitlements: Send + Sync + fmt::Debug + 'static {
    fn workload(&self, node: &NodeRecord, id: &SpiffeId) -> Result<bool, SourceError>;
}

/// What a node's `Workloads.Register` / `Unregister` does. The caller is an authenticated node.
#[tonic::async_trait]
pub trait WorkloadClaims: Send + Sync + fmt::Debug + 'static {
    async fn register(
        &self,
        cp: &ControlPlane,
        node: &str,
        workload: v1::Workload,
    ) -> Result<v1::RegisterWorkloadResponse, Status>;
    async fn unregister(
        &self,
        cp: &ControlPlane,
        node: &str,
        uid: &str,
    ) -> Result<v1::UnregisterWorkloadResponse, Status>;
}

/// Where the admin API writes policies. The core has validated every policy and refused
/// duplicate keys before calling.
#[tonic::async_trait]
pub trait PolicyStore: Send + Sync + fmt::Debug + 'static {
    async fn apply(
        &self,
        cp: &ControlPlane,
        policies: Vec<Policy>,
    ) -> Result<v1::ApplyPoliciesResponse, Status>;
    /// Deletes the named policies (`namespace/name`, or `name` for mesh-wide ones); an unknown
    /// name is `NOT_FOUND` and nothing is deleted.
    async fn delete(
        &self,
        cp: &ControlPlane,
        keys: Vec<String>,
    ) -> Result<v1::DeletePoliciesResponse, Status>;
}
