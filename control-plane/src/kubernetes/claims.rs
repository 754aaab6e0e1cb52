//! `Workloads.Register` / `Unregister` in Kubernetes mode. The directory comes from Pod objects,
//! so a node's claim writes nothing: Register answers the pod's SPIFFE ID when a Pod with that
//! uid runs on the calling node, and Unregister succeeds without doing anything. A compromised
//! node claiming another pod (or another pod's IP) changes nothing.

use std::sync::Arc;
use std::time::Duration;

use ferrule_proto::v1;
use tonic::Status;

use super::pods::{PodFacts, PodIndex};
use crate::service::workloads::find_workload;
use crate::sources::{SourceError, WorkloadClaims};
use crate::state::ControlPlane;
use crate::store::ResourceKind;

/// How long Register waits for the pod watch to catch up with a pod the node just started.
const CATCH_UP: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct PodClaims(pub Arc<PodIndex>);

impl PodClaims {
    /// The pod `uid` if it runs on `node`, waiting up to [`CATCH_UP`] for the watch to see it.
    async fn pod_on(&self, node: &str, uid: &str) -> Result<Option<PodFacts>, SourceError> {
        let mut updates = self.0.subscribe();
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            let found = {
                let snapshot = updates.borrow_and_update();
                let snapshot = snapshot
                    .as_ref()
                    .ok_or(SourceError::NotSynced("the cluster's pods"))?;
                snapshot.pods.get(uid).filter(|p| p.runs_on(node)).cloned()
            };
            if found.is_some() {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, updates.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
    }
}

#[tonic::async_trait]
impl WorkloadClaims for PodClaims {
    async fn register(
        &self,
        cp: &ControlPlane,
        node: &str,
        workload: v1::Workload,
    ) -> Result<v1::RegisterWorkloadResponse, Status> {
        let uid = workload.uid;
        let pod = self.pod_on(node, &uid).await?;
        let Some(spiffe_id) = pod.as_ref().and_then(|p| p.spiffe_id.clone()) else {
            tracing::warn!(%node, %uid, "refused a workload claim: no running Pod with this uid on the node");
            return Err(Status::permission_denied(format!(
                "no running Pod with uid {uid} on node {node}: in Kubernetes mode the directory comes from Pod objects"
            )));
        };
        if let Some(pod) = pod.filter(|p| {
            (p.namespace.as_str(), p.service_account.as_str())
                != (
                    workload.namespace.as_str(),
                    workload.service_account.as_str(),
                )
        }) {
            tracing::warn!(%node, %uid, claimed_namespace = %workload.namespace, claimed_service_account = %workload.service_account, namespace = %pod.namespace, service_account = %pod.service_account, "a node's workload claim differs from its Pod; the Pod decides");
        }
        let version = cp
            .config
            .version_of(ResourceKind::Workload, &uid)
            .unwrap_or_else(|| cp.config.version());
        Ok(v1::RegisterWorkloadResponse { spiffe_id, version })
    }

    async fn unregister(
        &self,
        cp: &ControlPlane,
        _node: &str,
        uid: &str,
    ) -> Result<v1::UnregisterWorkloadResponse, Status> {
        Ok(v1::UnregisterWorkloadResponse {
            existed: find_workload(cp, uid).is_some(),
            version: cp.config.version(),
        })
    }
}
