//! What the public HTTPS endpoint serves, kept current: the CRL is re-signed by the issuing CA
//! whenever the set of revoked serials changes, and well before it expires.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrule_identity::{RevocationReason, RevokedSerial};
use ferrule_proto::v1::revocation::Target;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::public::PublicDocuments;
use crate::revocations;
use crate::state::ControlPlane;

/// A CRL is valid this long; it is re-signed after half of it even without changes.
const CRL_VALIDITY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("signing the CRL: {0}")]
    Crl(#[from] ferrule_identity::ca::CaError),
    #[error(transparent)]
    Documents(#[from] crate::public::PublicError),
}

fn revoked_serials(cp: &ControlPlane) -> Vec<RevokedSerial> {
    revocations::revocations(cp)
        .into_iter()
        .filter_map(|r| match r.target {
            Some(Target::Serial(serial)) => Some(RevokedSerial {
                serial,
                revoked_at: UNIX_EPOCH + Duration::from_secs(r.revoked_at.max(0) as u64),
                reason: reason_code(&r.reason),
            }),
            _ => None,
        })
        .collect()
}

/// The CRL reason code for the operator's reason text, where one fits.
fn reason_code(reason: &str) -> RevocationReason {
    reason
        .parse()
        .unwrap_or(if reason.starts_with("node removed") {
            RevocationReason::CessationOfOperation
        } else {
            RevocationReason::Unspecified
        })
}

/// CRL numbers must only grow, across restarts too: seconds since the epoch do, as long as
/// CRLs are not signed faster than one per second (then the previous number plus one).
fn next_number(previous: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now.max(previous + 1)
}

pub fn documents(cp: &ControlPlane, number: u64) -> Result<PublicDocuments, PublishError> {
    let now = SystemTime::now();
    let crl = cp
        .ca
        .sign_crl(&revoked_serials(cp), number, now, now + CRL_VALIDITY)?;
    Ok(PublicDocuments::new(cp.ca.bundle(), Arc::new(crl), 1)?)
}

/// Signs the first documents and keeps them current until the task is aborted.
pub fn start(
    cp: Arc<ControlPlane>,
) -> Result<(watch::Receiver<Arc<PublicDocuments>>, JoinHandle<()>), PublishError> {
    let mut number = next_number(0);
    let (tx, rx) = watch::channel(Arc::new(documents(&cp, number)?));
    let task = tokio::spawn(async move {
        let mut versions = cp.config.subscribe();
        let mut listed = serial_set(&cp);
        loop {
            let refresh = tokio::time::sleep(CRL_VALIDITY / 2);
            tokio::select! {
                changed = versions.changed() => {
                    if changed.is_err() { return }
                    let now_listed = serial_set(&cp);
                    if now_listed == listed { continue }
                    listed = now_listed;
                }
                () = refresh => {}
            }
            number = next_number(number);
            match documents(&cp, number) {
                Ok(docs) => {
                    tracing::info!(number, revoked = listed.len(), "CRL signed");
                    tx.send_replace(Arc::new(docs));
                }
                Err(e) => {
                    tracing::error!(error = %e, "re-signing the CRL failed; serving the previous one")
                }
            }
        }
    });
    Ok((rx, task))
}

fn serial_set(cp: &ControlPlane) -> BTreeSet<String> {
    revoked_serials(cp).into_iter().map(|r| r.serial).collect()
}
