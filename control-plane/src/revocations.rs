//! Revocation: by certificate serial, by identity, by node (its node identity plus every
//! certificate issued through it). Revocations are configuration resources, so they reach every
//! agent through `Config.Watch`; the control plane's own verifier and its issuance refuse them too.
//!
//! Keys: `serial:<hex>` (kept until the certificate expires, so it stays in the CRL) and
//! `identity:<SPIFFE ID>` (kept until lifted; blocks issuance for that identity).

use std::sync::Arc;

use ferrule_identity::revocation::normalize_serial;
use ferrule_identity::{RevocationList, SpiffeId};
use ferrule_proto::v1::{self, revocation::Target};
use tonic::Status;

use crate::mesh_config::Change;
use crate::state::{ControlPlane, now, store_status};
use crate::store::{CertificateRecord, ResourceKind};

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    Serial(String),
    Identity(SpiffeId),
    Node(String),
}

pub fn serial_key(serial: &str) -> String {
    format!("serial:{}", normalize_serial(serial))
}

pub fn identity_key(id: &str) -> String {
    format!("identity:{id}")
}

/// The revocation resources as the list verifiers consult.
pub fn list(cp: &ControlPlane) -> RevocationList {
    let (mut serials, mut identities) = (Vec::new(), Vec::new());
    for revocation in revocations(cp) {
        match revocation.target {
            Some(Target::Serial(s)) => serials.push(s),
            Some(Target::SpiffeId(id)) => identities.push(id),
            None => {}
        }
    }
    RevocationList::new(serials, identities)
}

pub fn revocations(cp: &ControlPlane) -> Vec<v1::Revocation> {
    cp.config
        .list(ResourceKind::Revocation)
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(v1::resource::Kind::Revocation(revocation)) => Some(revocation),
            _ => None,
        })
        .collect()
}

/// Makes the control plane's own handshakes follow the current revocations, and closes the open
/// connections of callers they now cover.
pub fn refresh(cp: &ControlPlane) {
    let list = Arc::new(list(cp));
    cp.verify_bundle.set_revocations(list.clone());
    cp.connections.cut_revoked(&list);
}

/// Refreshes on every configuration version, whoever wrote it.
pub async fn enforce(cp: std::sync::Weak<ControlPlane>) {
    let Some(mut versions) = cp.upgrade().map(|cp| cp.config.subscribe()) else {
        return;
    };
    while versions.changed().await.is_ok() {
        let Some(cp) = cp.upgrade() else { return };
        refresh(&cp);
    }
}

pub fn identity_revoked(cp: &ControlPlane, id: &str) -> bool {
    cp.config
        .contains(ResourceKind::Revocation, &identity_key(id))
}

fn resource(key: String, revocation: v1::Revocation) -> Change {
    Change::Put(v1::Resource {
        key,
        kind: Some(v1::resource::Kind::Revocation(revocation)),
    })
}

fn serial_change(record: &CertificateRecord, reason: &str) -> Change {
    resource(
        serial_key(&record.serial),
        v1::Revocation {
            target: Some(Target::Serial(normalize_serial(&record.serial))),
            revoked_at: now() as i64,
            reason: reason.to_owned(),
            not_after: record.not_after as i64,
        },
    )
}

fn identity_change(id: &str, reason: &str) -> Change {
    resource(
        identity_key(id),
        v1::Revocation {
            target: Some(Target::SpiffeId(id.to_owned())),
            revoked_at: now() as i64,
            reason: reason.to_owned(),
            not_after: 0,
        },
    )
}

/// The inventory's certificate with `serial`.
async fn listed_serial(cp: &ControlPlane, serial: &str) -> Result<CertificateRecord, Status> {
    cp.store
        .get_certificate(&normalize_serial(serial))
        .await
        .map_err(store_status)?
        .ok_or_else(|| {
            Status::not_found(format!(
                "no certificate with serial {serial} in the inventory (see `ferrule certs`)"
            ))
        })
}

/// Certificates still valid that `wanted` selects.
async fn valid_certificates(
    cp: &ControlPlane,
    wanted: impl Fn(&CertificateRecord) -> bool,
) -> Result<Vec<CertificateRecord>, Status> {
    let current = now();
    let certificates = cp
        .store
        .list_certificates(None)
        .await
        .map_err(store_status)?;
    Ok(certificates
        .into_iter()
        .filter(|c| c.not_after > current && wanted(c))
        .collect())
}

/// Revokes `what` and pushes it; returns the new version and the serials it covers.
pub async fn revoke(
    cp: &ControlPlane,
    what: &Revoke,
    reason: &str,
) -> Result<(u64, Vec<String>), Status> {
    // An identity is revoked before its certificates are listed: a Sign racing with this call
    // either recorded its certificate before the listing (and it is covered) or finds the
    // identity revoked when it checks again after recording ([`revoked_while_issuing`]).
    let covered = match what {
        Revoke::Serial(serial) => vec![listed_serial(cp, serial).await?],
        Revoke::Identity(id) => {
            apply(cp, vec![identity_change(id.as_str(), reason)]).await?;
            valid_certificates(cp, |c| c.spiffe_id == id.as_str()).await?
        }
        Revoke::Node(node) => {
            let record = cp.store.get_node(node).await.map_err(store_status)?;
            let record =
                record.ok_or_else(|| Status::not_found(format!("no node named {node}")))?;
            apply(cp, vec![identity_change(&record.spiffe_id, reason)]).await?;
            valid_certificates(cp, |c| c.node == *node || c.spiffe_id == record.spiffe_id).await?
        }
    };
    let changes: Vec<Change> = covered.iter().map(|c| serial_change(c, reason)).collect();
    let serials = covered
        .iter()
        .map(|c| normalize_serial(&c.serial))
        .collect();
    let version = apply(cp, changes).await?;
    tracing::warn!(target_ = ?what, %reason, ?serials, version, "revoked");
    Ok((version, serials))
}

/// Revokes a certificate just issued if its identity or the node it was issued through was
/// revoked meanwhile (the revocation listed certificates before this one was recorded); returns
/// the revoked identity.
pub async fn revoked_while_issuing(
    cp: &ControlPlane,
    issued: &CertificateRecord,
    node_id: &str,
) -> Result<Option<String>, Status> {
    let Some(revoked) = [issued.spiffe_id.as_str(), node_id]
        .into_iter()
        .find(|id| identity_revoked(cp, id))
    else {
        return Ok(None);
    };
    let reason = format!("issued while {revoked} was being revoked");
    apply(cp, vec![serial_change(issued, &reason)]).await?;
    tracing::warn!(serial = %issued.serial, %revoked, "revoked a certificate issued during a revocation");
    Ok(Some(revoked.to_owned()))
}

/// Revocations of the still-valid certificates issued through `node` for `id`: what offboarding
/// the last workload of that identity on that node takes away.
pub async fn issued_through(
    cp: &ControlPlane,
    node: &str,
    id: &str,
    reason: &str,
) -> Result<Vec<Change>, Status> {
    let certificates = cp
        .store
        .list_certificates(Some(node))
        .await
        .map_err(store_status)?;
    let current = now();
    Ok(certificates
        .iter()
        .filter(|c| c.spiffe_id == id && c.not_after > current)
        .map(|c| serial_change(c, reason))
        .collect())
}

/// Lets an identity or node obtain certificates again; its revoked certificates stay revoked.
pub async fn lift(cp: &ControlPlane, what: &Revoke) -> Result<u64, Status> {
    let id = match what {
        Revoke::Identity(id) => id.to_string(),
        Revoke::Node(node) => SpiffeId::node(&cp.trust_domain, node)
            .map_err(|e| Status::invalid_argument(format!("node {node:?}: {e}")))?
            .to_string(),
        Revoke::Serial(_) => {
            return Err(Status::invalid_argument(
                "a revoked certificate stays revoked; --lift applies to --identity and --node",
            ));
        }
    };
    if !identity_revoked(cp, &id) {
        return Err(Status::not_found(format!("{id} is not revoked")));
    }
    let version = apply(
        cp,
        vec![Change::Remove(ResourceKind::Revocation, identity_key(&id))],
    )
    .await?;
    tracing::warn!(%id, version, "revocation lifted");
    Ok(version)
}

/// Applies revocation changes (with any others) and updates this control plane's verifier.
pub async fn apply(cp: &ControlPlane, changes: Vec<Change>) -> Result<u64, Status> {
    let version = cp
        .config
        .apply(cp.store.as_ref(), changes)
        .await
        .map_err(store_status)?;
    refresh(cp);
    Ok(version)
}

/// Serial revocations of certificates that have expired: they need not be pushed or listed in
/// the CRL any more.
pub fn expired(cp: &ControlPlane, now: u64) -> Vec<Change> {
    revocations(cp)
        .into_iter()
        .filter_map(|r| match r.target {
            Some(Target::Serial(serial)) if r.not_after > 0 && (r.not_after as u64) < now => Some(
                Change::Remove(ResourceKind::Revocation, serial_key(&serial)),
            ),
            _ => None,
        })
        .collect()
}
