//! What the public HTTPS endpoint serves, kept current: the CRL is re-signed by the issuing CA
//! whenever the set of revoked serials changes, and well before it expires; the offline CAs'
//! CRLs are re-read from their file every minute.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrule_identity::ca::IssuingCa;
use ferrule_identity::{RevocationReason, RevokedSerial};
use ferrule_proto::v1::revocation::Target;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::offline_crls::{self, OfflineCrlError, OfflineCrls};
use crate::public::PublicDocuments;
use crate::revocations;
use crate::state::ControlPlane;
use crate::store::ResourceKind;

/// A CRL is valid this long; it is re-signed after half of it even without changes.
const CRL_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// How often `ca.offline_crls` is re-read, so a file re-signed offline is served within a minute.
const OFFLINE_RELOAD: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("signing the CRL: {0}")]
    Crl(#[from] ferrule_identity::ca::CaError),
    #[error(transparent)]
    Documents(#[from] crate::public::PublicError),
    #[error(transparent)]
    OfflineCrls(#[from] OfflineCrlError),
}

/// The offline CAs' CRL file and the last good copy of it.
struct OfflineSource {
    path: Option<PathBuf>,
    current: OfflineCrls,
}

impl OfflineSource {
    /// A configured file that is missing or wrong stops the start: gateways would refuse clients.
    fn open(path: Option<PathBuf>, ca: &IssuingCa) -> Result<Self, PublishError> {
        let current = match &path {
            Some(path) => offline_crls::load(path, ca)?,
            None => OfflineCrls::default(),
        };
        warn_if_expired(&current);
        Ok(Self { path, current })
    }

    /// Re-reads the file; true when its CRLs changed. A bad file is logged and the last good
    /// copy kept, so a half-copied file never reaches gateways.
    fn reload(&mut self, ca: &IssuingCa) -> bool {
        let Some(path) = &self.path else { return false };
        match offline_crls::load(path, ca) {
            Ok(crls) if crls != self.current => {
                tracing::info!(path = %path.display(), crls = crls.status.len(), "offline CAs' CRLs reloaded");
                warn_if_expired(&crls);
                self.current = crls;
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(error = %e, "keeping the offline CAs' CRLs loaded before");
                false
            }
        }
    }
}

fn warn_if_expired(crls: &OfflineCrls) {
    for crl in crls.expired(SystemTime::now()) {
        tracing::error!(
            issuer = %crl.issuer,
            "the offline CRL has expired: gateways checking the chain refuse clients; re-sign it with `ferrule ca crl`"
        );
    }
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
    crate::state::now().max(previous + 1)
}

fn documents(
    cp: &ControlPlane,
    number: u64,
    offline: &OfflineCrls,
) -> Result<PublicDocuments, PublishError> {
    let now = SystemTime::now();
    let crl = cp
        .ca
        .sign_crl(&revoked_serials(cp), number, now, now + CRL_VALIDITY)?;
    Ok(PublicDocuments::new(
        cp.ca.bundle(),
        Arc::new(crl),
        offline,
        bundle_sequence(cp),
    )?)
}

/// The SPIFFE bundle's `spiffe_sequence` must grow whenever the bundle changes: the version of
/// the stored bundle resource does, and stays put across restarts with the same roots.
fn bundle_sequence(cp: &ControlPlane) -> u64 {
    let key = cp.ca.bundle().trust_domain().to_string();
    cp.config
        .version_of(ResourceKind::Bundle, &key)
        .unwrap_or(1)
}

/// Signs the first documents and keeps them current until the task is aborted.
pub fn start(
    cp: Arc<ControlPlane>,
    offline_crls: Option<PathBuf>,
) -> Result<(watch::Receiver<Arc<PublicDocuments>>, JoinHandle<()>), PublishError> {
    let mut offline = OfflineSource::open(offline_crls, &cp.ca)?;
    let mut number = next_number(0);
    let (tx, rx) = watch::channel(Arc::new(documents(&cp, number, &offline.current)?));
    let task = tokio::spawn(async move {
        let mut versions = cp.config.subscribe();
        let mut listed = serial_set(&cp);
        let start = tokio::time::Instant::now();
        let mut reload = tokio::time::interval_at(start + OFFLINE_RELOAD, OFFLINE_RELOAD);
        // A deadline, not a sleep per turn: the turns that sign nothing must not postpone it.
        let mut refresh_at = start + CRL_VALIDITY / 2;
        loop {
            let refresh = tokio::time::sleep_until(refresh_at);
            tokio::select! {
                changed = versions.changed() => {
                    if changed.is_err() { return }
                    let now_listed = serial_set(&cp);
                    if now_listed == listed { continue }
                    listed = now_listed;
                }
                _ = reload.tick() => {
                    if !offline.reload(&cp.ca) { continue }
                }
                () = refresh => {}
            }
            number = next_number(number);
            refresh_at = tokio::time::Instant::now() + CRL_VALIDITY / 2;
            match documents(&cp, number, &offline.current) {
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

#[cfg(test)]
mod tests {
    use ferrule_identity::ca::renew_offline_crls;
    use ferrule_identity::testing::TestCa;

    use super::*;

    #[test]
    fn reload_picks_up_a_re_signed_file_and_keeps_the_last_good_one() {
        let test = TestCa::new("example.org");
        let path = test.layout.offline_crls();
        let mut source = OfflineSource::open(Some(path.clone()), &test.ca).unwrap();
        assert_eq!(source.current.status.len(), 2);
        assert!(!source.reload(&test.ca), "unchanged file");

        // CRL numbers are signing seconds: wait for the next one so the new CRLs differ.
        std::thread::sleep(Duration::from_millis(1100));
        renew_offline_crls(&test.layout, Duration::from_secs(7 * 86_400)).unwrap();
        let before = source.current.clone();
        assert!(source.reload(&test.ca), "re-signed file");
        assert_ne!(source.current, before);
        let renewed = source.current.clone();

        std::fs::write(&path, "half a file").unwrap();
        assert!(!source.reload(&test.ca), "a bad file is not served");
        assert_eq!(source.current, renewed, "the last good copy stays");
    }

    #[test]
    fn without_a_file_nothing_is_added_or_reloaded() {
        let test = TestCa::new("example.org");
        let mut source = OfflineSource::open(None, &test.ca).unwrap();
        assert_eq!(source.current, OfflineCrls::default());
        assert!(!source.reload(&test.ca));
    }
}
