//! Admin calls on revocation, node removal and fleet status.

use std::sync::Arc;

use ferrule_identity::SpiffeId;
use ferrule_proto::v1::{self, revoke_request::Target};
use tonic::Status;

use crate::mesh_config::Change;
use crate::revocations::{self, Revoke};
use crate::state::{ControlPlane, uncancellable};
use crate::store::ResourceKind;

fn target(cp: &ControlPlane, target: Option<Target>) -> Result<Revoke, Status> {
    match target {
        Some(Target::Serial(serial)) => {
            let hex = serial.trim().trim_start_matches("0x");
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Status::invalid_argument(format!(
                    "serial {serial:?} is not hexadecimal (as `ferrule certs` prints it)"
                )));
            }
            Ok(Revoke::Serial(hex.to_owned()))
        }
        Some(Target::SpiffeId(id)) => {
            let parsed = SpiffeId::parse(&id)
                .map_err(|e| Status::invalid_argument(format!("identity {id:?}: {e}")))?;
            if parsed.trust_domain_str() != cp.trust_domain.as_str() {
                return Err(Status::invalid_argument(format!(
                    "identity {id} is not in trust domain {}",
                    cp.trust_domain
                )));
            }
            Ok(Revoke::Identity(parsed))
        }
        Some(Target::Node(node)) => {
            SpiffeId::node(&cp.trust_domain, &node)
                .map_err(|e| Status::invalid_argument(format!("node {node:?}: {e}")))?;
            Ok(Revoke::Node(node))
        }
        None => Err(Status::invalid_argument(
            "say what to revoke: a serial, an identity or a node",
        )),
    }
}

pub async fn revoke(
    cp: &Arc<ControlPlane>,
    admin: &str,
    request: v1::RevokeRequest,
) -> Result<v1::RevokeResponse, Status> {
    let what = target(cp, request.target)?;
    if request.lift {
        let version = revocations::lift(cp, &what).await?;
        return Ok(v1::RevokeResponse {
            version,
            serials: Vec::new(),
        });
    }
    let reason = match request.reason.trim() {
        "" => format!("revoked by {admin}"),
        reason => reason.to_owned(),
    };
    let cp = cp.clone();
    let (version, serials) =
        uncancellable(async move { revocations::revoke(&cp, &what, &reason).await }).await?;
    Ok(v1::RevokeResponse { version, serials })
}

pub fn list(cp: &ControlPlane) -> v1::ListRevocationsResponse {
    v1::ListRevocationsResponse {
        revocations: revocations::revocations(cp),
    }
}

/// Offboards a node: revokes it with every certificate issued through it, then drops its
/// workloads from the directory and its record. Runs to its end even if the caller goes away.
pub async fn remove_node(
    cp: &Arc<ControlPlane>,
    admin: &str,
    node: String,
) -> Result<v1::RemoveNodeResponse, Status> {
    let (cp, admin) = (cp.clone(), admin.to_owned());
    uncancellable(async move { offboard(&cp, &admin, node).await }).await
}

async fn offboard(
    cp: &ControlPlane,
    admin: &str,
    node: String,
) -> Result<v1::RemoveNodeResponse, Status> {
    let what = target(cp, Some(Target::Node(node.clone())))?;
    let (_, serials) = revocations::revoke(cp, &what, &format!("node removed by {admin}")).await?;
    let removals: Vec<Change> = cp
        .config
        .list(ResourceKind::Workload)
        .into_iter()
        .filter(|r| matches!(&r.kind, Some(v1::resource::Kind::Workload(w)) if w.node == node))
        .map(|r| Change::Remove(ResourceKind::Workload, r.key))
        .collect();
    let workloads = removals.len() as u32;
    let version = revocations::apply(cp, removals).await?;
    // Last: a failure above leaves the record, so the removal can be retried.
    cp.store
        .delete_node(&node)
        .await
        .map_err(crate::state::store_status)?;
    tracing::warn!(%node, %admin, workloads, "node removed");
    Ok(v1::RemoveNodeResponse {
        version,
        serials,
        workloads,
    })
}

pub async fn status(cp: &ControlPlane) -> v1::StatusResponse {
    let mut status = v1::StatusResponse {
        epoch: cp.config.epoch(),
        version: cp.config.version(),
        agents: cp.agents.list(),
        server_time_ms: crate::state::now_ms(),
        store: "embedded".into(),
        ..Default::default()
    };
    if let Some(etcd) = cp.store.as_etcd() {
        status.store = "etcd".into();
        match etcd.replicas().await {
            Ok((replicas, store_version)) => {
                status.replicas = replicas
                    .into_iter()
                    .map(|r| v1::ReplicaStatus {
                        lag: store_version.saturating_sub(r.version),
                        address: r.address,
                        version: r.version,
                        agents: r.agents,
                        leader: r.leader,
                    })
                    .collect();
            }
            Err(error) => status.store_error = error.to_string(),
        }
    }
    status
}
