//! Kubernetes mode's sources: nodes attest with projected service account tokens
//! ([`attest`]), a watch over all Pods and Namespaces ([`pods`]) decides what each node may
//! sign ([`entitlement`]) and makes the workload directory ([`directory`]), so that nodes'
//! claims change nothing ([`claims`]); `AuthorizationPolicy` objects are the policies
//! ([`policies`]).
//!
//! The API server is found with `kube::Config::infer()`: `KUBECONFIG` (or `~/.kube/config`),
//! else the in-cluster service account. RBAC the control plane needs: `tokenreviews` create;
//! `pods`, `namespaces` list/watch/get; `nodes` get; `authorizationpolicies` (group
//! `ferrule.dev`) get/list/watch/create/update/delete and `authorizationpolicies/status` patch.

pub mod attest;
mod burst;
pub mod claims;
pub mod directory;
pub mod entitlement;
pub mod pods;
pub mod policies;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use kube::Client;
use tokio::task::JoinHandle;

use crate::config::KubernetesConfig;
use crate::sources::Sources;
use crate::state::ControlPlane;
use attest::ServiceAccountTokens;
use claims::PodClaims;
use entitlement::PodEntitlements;
use pods::PodIndex;
use policies::CrdPolicies;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("finding the Kubernetes API server (KUBECONFIG or in-cluster): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client for the API server `kube::Config::infer()` finds.
pub async fn infer_client() -> Result<Client, Error> {
    let config = kube::Config::infer().await?;
    Ok(Client::try_from(config)?)
}

/// Kubernetes mode, before and after the control plane exists.
#[derive(Clone)]
pub struct Kubernetes {
    client: Client,
    config: KubernetesConfig,
    index: Arc<PodIndex>,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Kubernetes {
    pub fn new(client: Client, config: KubernetesConfig) -> Self {
        Self {
            client,
            config,
            index: Arc::new(PodIndex::default()),
        }
    }

    /// The sources the services ask in Kubernetes mode.
    pub fn sources(&self) -> Sources {
        Sources {
            attestor: Arc::new(ServiceAccountTokens {
                client: self.client.clone(),
                config: self.config.clone(),
            }),
            entitlements: Arc::new(PodEntitlements(self.index.clone())),
            workloads: Arc::new(PodClaims(self.index.clone())),
            policies: Arc::new(CrdPolicies {
                client: self.client.clone(),
                mesh_wide: self.config.namespace.clone(),
            }),
        }
    }

    /// Starts the watches that feed the sources; they end when the tasks are aborted.
    pub fn start(&self, cp: Arc<ControlPlane>) -> Vec<JoinHandle<()>> {
        tracing::info!(namespace = %self.config.namespace, "Kubernetes mode: watching Pods, Namespaces and AuthorizationPolicies");
        vec![
            pods::spawn(cp.clone(), self.client.clone(), self.index.clone()),
            policies::spawn(cp, self.client.clone(), self.config.namespace.clone()),
        ]
    }
}
