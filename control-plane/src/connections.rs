//! Live control-plane connections of callers with a certificate (nodes, admins), so that a
//! revocation closes them within a second instead of leaving Register and Watch working until
//! the caller reconnects, and so that no connection outlives the certificate it was opened with.
//! The handshake checked revocation once; this covers everything after it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferrule_identity::{RevocationList, SpiffeId};
use tokio::sync::watch;

/// The longest a connection stays open even with a long-lived (admin) certificate: clients
/// reconnect, and every reconnect runs the handshake's checks again.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Why the control plane closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Revoked,
    CertificateExpired,
}

impl Cut {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::CertificateExpired => "certificate_expired",
        }
    }
}

/// Completes when the connection must close, with the reason.
pub type CutSignal = Pin<Box<dyn Future<Output = Cut> + Send>>;

struct Live {
    id: SpiffeId,
    serial: String,
    cut: watch::Sender<bool>,
}

#[derive(Default)]
pub struct Connections {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Live>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("live", &self.count())
            .finish()
    }
}

/// Keeps a connection registered; dropping it (the connection closed) forgets it.
pub struct Registration {
    key: u64,
    connections: Arc<Connections>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.key);
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Registers a connection of `id` authenticated by the certificate `serial` that expires at
    /// `not_after`; the signal completes on revocation or at expiry (at most
    /// [`MAX_CONNECTION_AGE`] from now), whichever comes first.
    pub fn register(
        self: &Arc<Self>,
        id: SpiffeId,
        serial: String,
        not_after: SystemTime,
    ) -> (Registration, CutSignal) {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let (cut, mut revoked) = watch::channel(false);
        self.lock().insert(key, Live { id, serial, cut });
        let lifetime = not_after
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(MAX_CONNECTION_AGE);
        let signal = Box::pin(async move {
            tokio::select! {
                _ = revoked.wait_for(|cut| *cut) => Cut::Revoked,
                () = tokio::time::sleep(lifetime) => Cut::CertificateExpired,
            }
        });
        let registration = Registration {
            key,
            connections: self.clone(),
        };
        (registration, signal)
    }

    /// Closes every connection whose identity or certificate `revocations` covers; returns how
    /// many.
    pub fn cut_revoked(&self, revocations: &RevocationList) -> usize {
        let live = self.lock();
        let mut cut = 0;
        for conn in live.values() {
            let revoked = revocations.identity_revoked(conn.id.as_str())
                || revocations.serial_revoked(&conn.serial);
            if revoked && !*conn.cut.borrow() {
                tracing::warn!(id = %conn.id, serial = %conn.serial, "closing the control-plane connection of a revoked caller");
                conn.cut.send_replace(true);
                cut += 1;
            }
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://example.org/node/{name}")).unwrap()
    }

    fn in_an_hour() -> SystemTime {
        SystemTime::now() + Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn a_revoked_identity_or_serial_cuts_only_its_connections() {
        let connections = Arc::new(Connections::default());
        let (_a, a) = connections.register(id("a"), "0a".into(), in_an_hour());
        let (_b, b) = connections.register(id("b"), "0b".into(), in_an_hour());
        let (_c, mut c) = connections.register(id("c"), "0c".into(), in_an_hour());
        let revoked = RevocationList::new(
            vec!["0b".into()],
            vec!["spiffe://example.org/node/a".into()],
        );
        assert_eq!(connections.cut_revoked(&revoked), 2);
        assert_eq!(a.await, Cut::Revoked);
        assert_eq!(b.await, Cut::Revoked);
        let untouched = tokio::time::timeout(Duration::from_millis(50), &mut c).await;
        assert!(untouched.is_err(), "c is not revoked");
        assert_eq!(connections.cut_revoked(&revoked), 0, "each is cut once");
    }

    #[tokio::test]
    async fn a_connection_ends_when_its_certificate_does() {
        let connections = Arc::new(Connections::default());
        let soon = SystemTime::now() + Duration::from_millis(100);
        let (_r, signal) = connections.register(id("a"), "0a".into(), soon);
        assert_eq!(signal.await, Cut::CertificateExpired);
    }

    #[test]
    fn a_closed_connection_is_forgotten() {
        let connections = Arc::new(Connections::default());
        let (registration, _signal) = connections.register(id("a"), "0a".into(), in_an_hour());
        assert_eq!(connections.count(), 1);
        drop(registration);
        assert_eq!(connections.count(), 0);
    }
}
