//! Finding a stream slot on a pooled connection, or dialing one, without a burst of first
//! streams each opening its own connection.

use std::sync::{Arc, Weak};

use ferrule_identity::SharedBundle;
use rustls::sign::CertifiedKey;
use tokio::time::Instant;

use super::tunnel::Tunnel;
use super::{DialLock, FailedDial, Shared, TunnelKey, TunnelPool, dial};
use crate::identity::WorkloadCert;
use crate::proxy::{OutboundError, StreamSlot};

impl TunnelPool {
    pub(super) async fn checkout(
        &self,
        key: &TunnelKey,
        source: &WorkloadCert,
        bundle: &SharedBundle,
        deadline: Instant,
    ) -> Result<(Arc<Tunnel>, StreamSlot), OutboundError> {
        let dialing = match self.reuse(key, &source.certified) {
            Ok(found) => return Ok(found),
            Err(dialing) => dialing,
        };
        let waiting_since = Instant::now();
        let mut turn = tokio::time::timeout_at(deadline, dialing.lock())
            .await
            .map_err(|_| self.timed_out(key))?;
        if let Some(failed) = turn.as_ref().filter(|f| f.at >= waiting_since) {
            return Err(OutboundError::DialFailed {
                address: key.address,
                reason: failed.reason.clone(),
            });
        }
        // Whoever dialed while we waited may have made room for us too.
        let dialing = match self.reuse(key, &source.certified) {
            Ok(found) => return Ok(found),
            Err(now) if Arc::ptr_eq(&now, &dialing) => now,
            Err(_) => {
                return Err(OutboundError::Closed {
                    address: key.address,
                });
            }
        };
        let tunnel = self
            .dial_recorded(key, source, bundle, deadline, &mut turn)
            .await?;
        let slot = tunnel.try_reserve(&source.certified);
        let mut keys = self.keys();
        // `close_identity` ran while we dialed: this tunnel must not be used.
        let Some(entry) = keys
            .get_mut(key)
            .filter(|e| Arc::ptr_eq(&e.dialing, &dialing))
        else {
            tunnel.close();
            return Err(OutboundError::Closed {
                address: key.address,
            });
        };
        entry.tunnels.push(tunnel.clone());
        let slot = slot.ok_or(OutboundError::NoStreams {
            address: key.address,
        })?;
        Ok((tunnel, slot))
    }

    /// Dials by `deadline`; a failure is recorded in `turn` for the streams queued behind us.
    async fn dial_recorded(
        &self,
        key: &TunnelKey,
        source: &WorkloadCert,
        bundle: &SharedBundle,
        deadline: Instant,
        turn: &mut Option<FailedDial>,
    ) -> Result<Arc<Tunnel>, OutboundError> {
        let on_close = closer(Arc::downgrade(&self.shared), key.clone());
        let dialed = dial::dial(key, source, bundle, &self.shared.config, on_close);
        let dialed = tokio::time::timeout_at(deadline, dialed)
            .await
            .unwrap_or_else(|_| Err(self.timed_out(key)));
        *turn = dialed.as_ref().err().map(|e| FailedDial {
            at: Instant::now(),
            reason: e.to_string(),
        });
        dialed
    }

    fn timed_out(&self, key: &TunnelKey) -> OutboundError {
        OutboundError::Timeout {
            address: key.address,
            after: self.shared.config.connect_timeout,
        }
    }

    /// A stream slot on a live tunnel for `key` made with `cert`, or the key's dial lock.
    fn reuse(
        &self,
        key: &TunnelKey,
        cert: &Arc<CertifiedKey>,
    ) -> Result<(Arc<Tunnel>, StreamSlot), DialLock> {
        let mut keys = self.keys();
        let entry = keys.entry(key.clone()).or_default();
        for tunnel in &entry.tunnels {
            if let Some(slot) = tunnel.try_reserve(cert) {
                return Ok((tunnel.clone(), slot));
            }
        }
        Err(entry.dialing.clone())
    }
}

/// Run by a tunnel's driver when it ends: forget it, and the key once nothing uses it.
fn closer(pool: Weak<Shared>, key: TunnelKey) -> impl FnOnce(u64) + Send + 'static {
    move |closed| {
        let Some(pool) = pool.upgrade() else { return };
        let mut keys = pool.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = keys.get_mut(&key) {
            entry.tunnels.retain(|t| t.id() != closed);
            if entry.tunnels.is_empty() && Arc::strong_count(&entry.dialing) == 1 {
                keys.remove(&key);
            }
        }
    }
}
