//! Connection caps shared by every pod listener of the agent: a node-wide total, and a cap per
//! pod (its outbound connections on 15001) and per source address (HBONE connections on
//! 15008), so no pod or peer can take the agent's file descriptors from the others.
//! An admitted connection holds an [`Admission`]; dropping it gives the slot back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ferrule_config::http::{HttpLimit, ServeLimits};

use crate::config::Limits;
use crate::telemetry::{Limit, Listener, Telemetry};

/// Who a capped connection is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapKey {
    /// A pod's outbound connections, by its network-namespace cookie.
    Pod(u64),
    /// HBONE connections from one address.
    Source(IpAddr),
}

#[derive(Debug)]
pub struct ConnectionCaps {
    max_total: usize,
    max_per_pod: usize,
    max_per_source: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_key: HashMap<CapKey, usize>,
}

/// A connection's slot; dropped when the connection ends.
#[derive(Debug)]
pub struct Admission {
    caps: Arc<ConnectionCaps>,
    key: CapKey,
}

impl ConnectionCaps {
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            max_total: limits.max_connections,
            max_per_pod: limits.max_connections_per_pod,
            max_per_source: limits.max_connections_per_source,
            open: Mutex::default(),
        })
    }

    /// A slot for one more connection of `key`, or the limit that refuses it.
    pub fn admit(self: &Arc<Self>, key: CapKey) -> Result<Admission, Limit> {
        let (max, limit) = match key {
            CapKey::Pod(_) => (self.max_per_pod, Limit::ConnectionsPerPod),
            CapKey::Source(_) => (self.max_per_source, Limit::ConnectionsPerSource),
        };
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(Limit::Connections);
        }
        let of_key = open.by_key.entry(key).or_default();
        if *of_key >= max {
            return Err(limit);
        }
        *of_key += 1;
        open.total += 1;
        Ok(Admission {
            caps: self.clone(),
            key,
        })
    }

    /// Connections open now: all, and of `key`.
    pub fn open(&self, key: CapKey) -> (usize, usize) {
        let open = self.lock();
        (open.total, open.by_key.get(&key).copied().unwrap_or(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.caps.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(of_key) = open.by_key.get_mut(&self.key) {
            *of_key -= 1;
            // Keys of pods and peers that are gone must not pile up.
            if *of_key == 0 {
                open.by_key.remove(&self.key);
            }
        }
    }
}

/// The limits of the agent's small HTTP servers (readiness port, enrollment socket), each
/// hit counted under `listener`.
pub fn http_limits(limits: &Limits, telemetry: Arc<Telemetry>, listener: Listener) -> ServeLimits {
    ServeLimits {
        max_connections: limits.max_api_connections,
        header_read_timeout: limits.header_read_timeout,
        on_hit: Arc::new(move |hit| {
            let limit = match hit {
                HttpLimit::Connections => Limit::ApiConnections,
                HttpLimit::HeaderReadTimeout => Limit::HeaderReadTimeout,
            };
            telemetry.limit_hit(listener, limit);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(total: usize, per_pod: usize, per_source: usize) -> Arc<ConnectionCaps> {
        ConnectionCaps::new(&Limits {
            max_connections: total,
            max_connections_per_pod: per_pod,
            max_connections_per_source: per_source,
            ..Limits::default()
        })
    }

    #[test]
    fn one_pod_at_its_cap_leaves_the_others_their_share() {
        let caps = caps(10, 2, 3);
        let (a, b) = (CapKey::Pod(1), CapKey::Pod(2));
        let held: Vec<_> = (0..2).map(|_| caps.admit(a).unwrap()).collect();
        assert_eq!(caps.admit(a).unwrap_err(), Limit::ConnectionsPerPod);
        let other = caps.admit(b).expect("another pod is not affected");
        assert_eq!(caps.open(a), (3, 2));
        drop(held);
        assert_eq!(caps.open(a), (1, 0), "slots come back when connections end");
        caps.admit(a).expect("admitted again once below the cap");
        drop(other);
    }

    #[test]
    fn sources_have_their_own_cap_and_everything_counts_toward_the_total() {
        let caps = caps(4, 10, 3);
        let source = CapKey::Source("10.0.0.9".parse().unwrap());
        let held: Vec<_> = (0..3).map(|_| caps.admit(source).unwrap()).collect();
        assert_eq!(caps.admit(source).unwrap_err(), Limit::ConnectionsPerSource);
        let pod = caps.admit(CapKey::Pod(7)).unwrap();
        assert_eq!(caps.admit(CapKey::Pod(8)).unwrap_err(), Limit::Connections);
        drop((held, pod));
        assert_eq!(caps.open(source), (0, 0));
        assert!(caps.lock().by_key.is_empty(), "no key left behind");
    }
}
