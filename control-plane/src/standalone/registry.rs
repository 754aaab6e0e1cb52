//! Workloads registered by the node that runs them. A node may register only identities it is
//! entitled to and remove only its own; the last workload of an identity leaving a node revokes
//! the certificates the node obtained for it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrule_identity::SpiffeId;
use ferrule_proto::v1;
use tonic::Status;

use crate::auth::entitled;
use crate::mesh_config::Change;
use crate::revocations;
use crate::service::workloads::{find_workload, workload_resource};
use crate::sources::WorkloadClaims;
use crate::state::{ControlPlane, now, store_status};
use crate::store::ResourceKind;

#[derive(Debug, Clone, Copy, Default)]
pub struct AgentRegistry;

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 128
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Checks the request and builds the record the control plane stores (node and ID are ours).
async fn record(cp: &ControlPlane, node: &str, w: v1::Workload) -> Result<v1::Workload, Status> {
    if !valid_uid(&w.uid) {
        return Err(Status::invalid_argument(format!(
            "uid {:?}: 1-128 of [A-Za-z0-9-_.]",
            w.uid
        )));
    }
    let id = SpiffeId::workload(&cp.trust_domain, &w.namespace, &w.service_account)
        .map_err(|e| Status::invalid_argument(format!("namespace/service account: {e}")))?;
    if w.ips.is_empty() {
        return Err(Status::invalid_argument("a workload needs at least one IP"));
    }
    for ip in &w.ips {
        ip.parse::<IpAddr>()
            .map_err(|e| Status::invalid_argument(format!("ip {ip:?}: {e}")))?;
    }
    let node_record = cp
        .store
        .get_node(node)
        .await
        .map_err(store_status)?
        .ok_or_else(|| Status::permission_denied(format!("node {node} is not registered")))?;
    if !entitled(cp.sources.entitlements.as_ref(), &node_record, &id)? {
        return Err(Status::permission_denied(format!(
            "node {node} may not run {id}"
        )));
    }
    validate_labels(&w.labels)?;
    Ok(v1::Workload {
        spiffe_id: id.to_string(),
        node: node.to_owned(),
        registered_at: now() as i64,
        ..w
    })
}

/// Label keys and values as Kubernetes allows them (prefix/name ≤ 253/63, values ≤ 63).
fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), Status> {
    let token = |s: &str| {
        s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    for (key, value) in labels {
        let name = key.rsplit('/').next().unwrap_or(key);
        if key.is_empty() || key.len() > 253 || name.is_empty() || !token(name) || !token(value) {
            return Err(Status::invalid_argument(format!(
                "label {key:?}={value:?}: keys and values are up to 63 of [A-Za-z0-9-_.] (keys may have a DNS prefix/)"
            )));
        }
    }
    Ok(())
}

/// Whether another workload of `w`'s identity still runs on `w`'s node (and uses its certificate).
fn identity_still_on_node(cp: &ControlPlane, w: &v1::Workload) -> bool {
    cp.config
        .list(ResourceKind::Workload)
        .into_iter()
        .any(|r| match r.kind {
            Some(v1::resource::Kind::Workload(other)) => {
                other.uid != w.uid && other.node == w.node && other.spiffe_id == w.spiffe_id
            }
            _ => false,
        })
}

#[tonic::async_trait]
impl WorkloadClaims for AgentRegistry {
    async fn register(
        &self,
        cp: &ControlPlane,
        node: &str,
        workload: v1::Workload,
    ) -> Result<v1::RegisterWorkloadResponse, Status> {
        let record = record(cp, node, workload).await?;
        let spiffe_id = record.spiffe_id.clone();
        tracing::info!(%node, uid = %record.uid, id = %spiffe_id, ips = ?record.ips, "workload registered");
        let change = Change::Put(workload_resource(record));
        let version = cp
            .config
            .apply(cp.store.as_ref(), vec![change])
            .await
            .map_err(store_status)?;
        Ok(v1::RegisterWorkloadResponse { spiffe_id, version })
    }

    async fn unregister(
        &self,
        cp: &ControlPlane,
        node: &str,
        uid: &str,
    ) -> Result<v1::UnregisterWorkloadResponse, Status> {
        let existing = find_workload(cp, uid);
        if existing.as_ref().is_some_and(|w| w.node != node) {
            return Err(Status::permission_denied(format!(
                "workload {uid} runs on another node"
            )));
        }
        let existed = existing.is_some();
        let mut changes = vec![Change::Remove(ResourceKind::Workload, uid.to_owned())];
        if let Some(w) = existing.filter(|w| !identity_still_on_node(cp, w)) {
            // Offboarding: the node's certificates for this identity are no longer needed.
            let reason = format!("workload {uid} removed from node {node}");
            changes.extend(revocations::issued_through(cp, node, &w.spiffe_id, &reason).await?);
        }
        let version = revocations::apply(cp, changes).await?;
        tracing::info!(%node, %uid, existed, "workload unregistered");
        Ok(v1::UnregisterWorkloadResponse { existed, version })
    }
}
