//! The workload directory in Kubernetes mode: the meshed pods of the index, written to the
//! config store as Put/Remove changes against what it holds. And offboarding: when the last pod
//! of an identity leaves a node, the certificates that node obtained for it are revoked, as
//! `Workloads.Unregister` does in standalone mode.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ferrule_proto::v1;
use tonic::Status;

use super::pods::PodSnapshot;
use crate::mesh_config::Change;
use crate::revocations;
use crate::service::workloads::{workload_resource, workloads};
use crate::state::ControlPlane;
use crate::store::ResourceKind;

/// The changes that turn the directory `current` into `desired`.
pub fn changes(
    current: &HashMap<String, v1::Workload>,
    desired: &BTreeMap<String, v1::Workload>,
) -> Vec<Change> {
    let puts = desired
        .iter()
        .filter(|(uid, w)| current.get(*uid) != Some(w))
        .map(|(_, w)| Change::Put(workload_resource(w.clone())));
    let mut gone: Vec<&String> = current
        .keys()
        .filter(|uid| !desired.contains_key(*uid))
        .collect();
    gone.sort();
    let removals = gone
        .into_iter()
        .map(|uid| Change::Remove(ResourceKind::Workload, uid.clone()));
    puts.chain(removals).collect()
}

/// (node, SPIFFE ID) pairs of `before` that no longer run anywhere in `after`.
pub fn departed<'a>(
    before: impl IntoIterator<Item = (&'a str, &'a str)>,
    after: &PodSnapshot,
) -> BTreeSet<(String, String)> {
    before
        .into_iter()
        .filter(|(node, id)| !after.runs(node, id))
        .map(|(node, id)| (node.to_owned(), id.to_owned()))
        .collect()
}

/// Brings the directory in line with `snapshot` and revokes what departed since `previous`
/// (or, on the first sync, since the directory the store kept), in one version.
pub async fn sync(
    cp: &ControlPlane,
    previous: Option<&PodSnapshot>,
    snapshot: &PodSnapshot,
) -> Result<u64, Status> {
    let current: HashMap<String, v1::Workload> =
        workloads(cp).map(|w| (w.uid.clone(), w)).collect();
    let mut changes = changes(&current, &snapshot.workloads);
    let removed = changes
        .iter()
        .filter(|c| matches!(c, Change::Remove(..)))
        .count();
    let written = changes.len() - removed;
    let before = previous
        .into_iter()
        .flat_map(|p| p.running.iter().map(|(n, id)| (n.as_str(), id.as_str())))
        .chain(
            current
                .values()
                .map(|w| (w.node.as_str(), w.spiffe_id.as_str())),
        );
    let mut revoked = 0;
    for (node, id) in departed(before, snapshot) {
        let reason = format!("the last pod of {id} left node {node}");
        let revocations = revocations::issued_through(cp, &node, &id, &reason).await?;
        let fresh = revocations.into_iter().filter(|change| match change {
            Change::Put(r) => !cp.config.contains(ResourceKind::Revocation, &r.key),
            Change::Remove(..) => true,
        });
        let before = changes.len();
        changes.extend(fresh);
        revoked += changes.len() - before;
        if changes.len() > before {
            tracing::info!(%node, %id, "last pod of the identity left the node: revoking its certificates there");
        }
    }
    if changes.is_empty() {
        return Ok(cp.config.version());
    }
    let version = revocations::apply(cp, changes).await?;
    tracing::info!(
        version,
        workloads = snapshot.workloads.len(),
        written,
        removed,
        revoked,
        "workload directory updated from Pods"
    );
    Ok(version)
}

#[cfg(test)]
mod tests;
