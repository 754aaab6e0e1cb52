//! The HBONE client: a pool of mutual-TLS HTTP/2 connections, each carrying many streams.

mod checkout;
pub(super) mod dial;
mod tunnel;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use ferrule_identity::{SharedBundle, SpiffeId, TrustBundle};
use tokio::time::Instant;
use tracing::debug;

use super::{HboneStream, OutboundError};
use crate::identity::WorkloadCert;
use tunnel::{Open, Tunnel};

/// What a tunnel is for; streams share a connection only when all three match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TunnelKey {
    pub source: SpiffeId,
    /// The identity the control plane says the destination has; the server must present it.
    pub destination: SpiffeId,
    /// Where the tunnel goes: the destination's `podIP:15008`.
    pub address: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Bounds a stream's whole setup: waiting for a dial in progress, TCP connect, TLS and
    /// HTTP/2 handshakes, and the wait for the CONNECT answer.
    pub connect_timeout: Duration,
    /// Streams one connection carries before the pool opens another (HOL blocking vs. sockets).
    pub max_streams_per_connection: usize,
    /// A connection without streams for this long (up to twice as long) is closed.
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_streams_per_connection: 256,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Cheap to clone; clones share the connections.
#[derive(Debug, Clone)]
pub struct TunnelPool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: PoolConfig,
    keys: Mutex<HashMap<TunnelKey, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Held while dialing, so a burst of first streams waits for one handshake instead of
    /// opening a connection each. It keeps the last failed dial, which the streams that waited
    /// for it share instead of each dialing the failing peer again.
    dialing: DialLock,
    tunnels: Vec<Arc<Tunnel>>,
}

type DialLock = Arc<tokio::sync::Mutex<Option<FailedDial>>>;

#[derive(Debug, Clone)]
struct FailedDial {
    at: Instant,
    reason: String,
}

impl TunnelPool {
    pub fn new(config: PoolConfig) -> Self {
        let keys = Mutex::new(HashMap::new());
        Self {
            shared: Arc::new(Shared { config, keys }),
        }
    }

    /// A stream to `authority` (the original destination) through the tunnel for `key`,
    /// presenting `source`'s certificate. A non-200 answer is [`OutboundError::Status`].
    pub async fn connect(
        &self,
        key: &TunnelKey,
        source: &WorkloadCert,
        bundle: &SharedBundle,
        authority: SocketAddr,
    ) -> Result<HboneStream, OutboundError> {
        if source.id != key.source {
            let (expected, got) = (key.source.to_string(), source.id.to_string());
            return Err(OutboundError::WrongSource { expected, got });
        }
        // One budget for the whole setup: waiting for another stream's dial, our own dial and
        // the CONNECT answer. A burst towards a silent peer then fails together after it, not
        // one dial timeout after another.
        let budget = self.shared.config.connect_timeout;
        let deadline = Instant::now() + budget;
        let mut retried = false;
        loop {
            let (tunnel, slot) = self.checkout(key, source, bundle, deadline).await?;
            match tunnel.open(authority, slot, (deadline, budget)).await {
                Open::Stream(stream) => return Ok(stream),
                Open::Failed(e) => return Err(e),
                // The connection ended between checkout and use; nothing was sent, so another
                // connection may carry the stream.
                Open::NotSent(e) if !retried => {
                    debug!(address = %key.address, error = %e, "HBONE tunnel gone; retrying");
                    retried = true;
                }
                Open::NotSent(source) => {
                    return Err(OutboundError::Http2 {
                        address: key.address,
                        source,
                    });
                }
            }
        }
    }

    /// Closes every tunnel from or to `id` at once, streams included (revocation).
    pub fn close_identity(&self, id: &SpiffeId) {
        let mut closing = Vec::new();
        self.keys().retain(|key, entry| {
            let hit = key.source == *id || key.destination == *id;
            if hit {
                closing.append(&mut entry.tunnels);
            }
            !hit
        });
        closing.iter().for_each(|tunnel| tunnel.close());
    }

    /// Closes every tunnel, streams included, whose certificate (ours or the destination's)
    /// `bundle` revokes or whose destination no longer chains to one of its roots (a revoked
    /// serial, a removed root); returns how many.
    pub fn close_untrusted(&self, bundle: &TrustBundle) -> usize {
        let now = SystemTime::now();
        let mut closing = Vec::new();
        for (key, entry) in self.keys().iter_mut() {
            entry.tunnels.retain(|tunnel| {
                let Some(why) = tunnel.credentials.untrusted(bundle, now) else {
                    return true;
                };
                tracing::warn!(source = %key.source, destination = %key.destination, address = %key.address, %why, "closing outbound HBONE tunnel");
                closing.push(tunnel.clone());
                false
            });
        }
        closing.iter().for_each(|tunnel| tunnel.close());
        closing.len()
    }

    /// Open connections, for status and tests.
    pub fn connection_count(&self) -> usize {
        let keys = self.keys();
        keys.values()
            .flat_map(|e| &e.tunnels)
            .filter(|t| !t.is_closed())
            .count()
    }

    fn keys(&self) -> MutexGuard<'_, HashMap<TunnelKey, Entry>> {
        self.shared.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}
