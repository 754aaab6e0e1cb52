//! Workloads registered by the node that runs them. A node may register only identities it is
//! entitled to, at addresses inside its pod networks, under a uid no other node holds, and remove
//! only its own; the last workload of an identity leaving a node revokes
//! the certificates the node obtained for it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrule_identity::SpiffeId;
use ferrule_proto::v1;
use tonic::Status;

use crate::auth::entitled;
use crate::mesh_config::Change;
use crate::pod_networks;
use crate::revocations;
use crate::service::workloads::{find_workload, workload_resource, workloads};
use crate::sources::WorkloadClaims;
use crate::state::{ControlPlane, now, store_status};
use crate::store::{NodeRecord, ResourceKind};

#[derive(Debug, Clone, Copy, Default)]
pub struct AgentRegistry;

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 128
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A refused claim: the `reason` label of `ferrule_workload_claims_refused` and the caller's error.
struct Refused(&'static str, Status);

impl Refused {
    fn invalid(message: String) -> Self {
        Self("invalid", Status::invalid_argument(message))
    }

    fn report(self, cp: &ControlPlane, node: &str, uid: &str) -> Status {
        let Refused(reason, status) = self;
        cp.metrics.claim_refused(node, reason);
        tracing::warn!(%node, %uid, reason, error = %status.message(), "workload claim refused");
        status
    }
}

/// An accepted claim: the record to store and the node's own stale workloads it replaces.
struct Claim {
    record: v1::Workload,
    superseded: Vec<String>,
}

/// Checks the request and builds the record the control plane stores (node and ID are ours).
fn check(cp: &ControlPlane, node: &NodeRecord, w: v1::Workload) -> Result<Claim, Refused> {
    if !valid_uid(&w.uid) {
        return Err(Refused::invalid(format!(
            "uid {:?}: 1-128 of [A-Za-z0-9-_.]",
            w.uid
        )));
    }
    let id = SpiffeId::workload(&cp.trust_domain, &w.namespace, &w.service_account)
        .map_err(|e| Refused::invalid(format!("namespace/service account: {e}")))?;
    let ips = parse_ips(&w.ips)?;
    validate_labels(&w.labels).map_err(Refused::invalid)?;
    let entitled = entitled(cp.sources.entitlements.as_ref(), node, &id)
        .map_err(|e| Refused("unavailable", e.into()))?;
    if !entitled {
        let message = format!("node {} may not run {id}", node.name);
        return Err(Refused("not_entitled", Status::permission_denied(message)));
    }
    if let Some(message) = ips.iter().find_map(|ip| pod_networks::outside(node, *ip)) {
        return Err(Refused(
            "outside_pod_cidr",
            Status::permission_denied(message),
        ));
    }
    let superseded = check_conflicts(cp, &node.name, &w.uid, &ips)?;
    let record = v1::Workload {
        spiffe_id: id.to_string(),
        node: node.name.clone(),
        registered_at: now() as i64,
        ..w
    };
    Ok(Claim { record, superseded })
}

fn parse_ips(ips: &[String]) -> Result<Vec<IpAddr>, Refused> {
    if ips.is_empty() {
        return Err(Refused::invalid("a workload needs at least one IP".into()));
    }
    ips.iter()
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|e| Refused::invalid(format!("ip {ip:?}: {e}")))
        })
        .collect()
}

/// Refuses a uid another node registered and an address another node's workload holds. The
/// node's own workloads at a claimed address are stale (their pod is gone and the address
/// reused): they are returned, to be replaced.
fn check_conflicts(
    cp: &ControlPlane,
    node: &str,
    uid: &str,
    ips: &[IpAddr],
) -> Result<Vec<String>, Refused> {
    let mut superseded = Vec::new();
    for other in workloads(cp) {
        if other.uid == uid {
            if other.node != node {
                let message = format!(
                    "workload uid {uid} is registered by node {}; a node may replace only its own workloads",
                    other.node
                );
                return Err(Refused("uid_taken", Status::permission_denied(message)));
            }
            continue;
        }
        let Some(shared) = ips.iter().find(|ip| other.ips.contains(&ip.to_string())) else {
            continue;
        };
        if other.node != node {
            let message = format!(
                "ip {shared} belongs to workload {} ({}) of node {}",
                other.uid, other.spiffe_id, other.node
            );
            return Err(Refused("address_taken", Status::already_exists(message)));
        }
        superseded.push(other.uid);
    }
    Ok(superseded)
}

/// Label keys and values as Kubernetes allows them (prefix/name ≤ 253/63, values ≤ 63).
fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    let token = |s: &str| {
        s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    for (key, value) in labels {
        let name = key.rsplit('/').next().unwrap_or(key);
        if key.is_empty() || key.len() > 253 || name.is_empty() || !token(name) || !token(value) {
            return Err(format!(
                "label {key:?}={value:?}: keys and values are up to 63 of [A-Za-z0-9-_.] (keys may have a DNS prefix/)"
            ));
        }
    }
    Ok(())
}

/// Whether another workload of `w`'s identity still runs on `w`'s node (and uses its certificate).
fn identity_still_on_node(cp: &ControlPlane, w: &v1::Workload) -> bool {
    workloads(cp)
        .any(|other| other.uid != w.uid && other.node == w.node && other.spiffe_id == w.spiffe_id)
}

#[tonic::async_trait]
impl WorkloadClaims for AgentRegistry {
    async fn register(
        &self,
        cp: &ControlPlane,
        node: &str,
        workload: v1::Workload,
    ) -> Result<v1::RegisterWorkloadResponse, Status> {
        let node_record = cp
            .store
            .get_node(node)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::permission_denied(format!("node {node} is not registered")))?;
        let uid = workload.uid.clone();
        let Claim { record, superseded } =
            check(cp, &node_record, workload).map_err(|r| r.report(cp, node, &uid))?;
        let spiffe_id = record.spiffe_id.clone();
        tracing::info!(%node, %uid, id = %spiffe_id, ips = ?record.ips, ?superseded, "workload registered");
        let mut changes: Vec<Change> = superseded
            .into_iter()
            .map(|stale| Change::Remove(ResourceKind::Workload, stale))
            .collect();
        changes.push(Change::Put(workload_resource(record)));
        let version = cp
            .config
            .apply(cp.store.as_ref(), changes)
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
