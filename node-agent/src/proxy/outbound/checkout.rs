//! Finding a stream slot on a pooled connection, or dialing one, without a burst of first
//! streams each opening its own connection.

use std::sync::{Arc, Weak};

use ferrule_identity::SharedBundle;
use rustls::sign::CertifiedKey;

use super::tunnel::Tunnel;
use super::{Shared, TunnelKey, TunnelPool, dial};
use crate::identity::WorkloadCert;
use crate::proxy::{OutboundError, StreamSlot};

impl TunnelPool {
    pub(super) async fn checkout(
        &self,
        key: &TunnelKey,
        source: &WorkloadCert,
        bundle: &SharedBundle,
    ) -> Result<(Arc<Tunnel>, StreamSlot), OutboundError> {
        let dialing = match self.reuse(key, &source.certified) {
            Ok(found) => return Ok(found),
            Err(dialing) => dialing,
        };
        let _turn = dialing.lock().await;
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
        let on_close = closer(Arc::downgrade(&self.shared), key.clone());
        let tunnel = dial::dial(key, source, bundle, &self.shared.config, on_close).await?;
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

    /// A stream slot on a live tunnel for `key` made with `cert`, or the key's dial lock.
    fn reuse(
        &self,
        key: &TunnelKey,
        cert: &Arc<CertifiedKey>,
    ) -> Result<(Arc<Tunnel>, StreamSlot), Arc<tokio::sync::Mutex<()>>> {
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
