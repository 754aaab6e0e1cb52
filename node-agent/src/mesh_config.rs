//! The mesh configuration the agent enforces (directory, policies, revocations, trust bundle),
//! followed from the control plane's `Config.Watch`. Readers on the connection path take the
//! current [`MeshState`] behind an `Arc` and never wait on the network; enforcement tasks
//! subscribe and re-check live connections whenever a new version lands. While the control plane
//! is unreachable the last applied version stays in force; before the first one is applied the
//! agent admits no stream ([`MeshConfig::is_ready`], fail closed).

mod state;
mod watch;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

pub use state::{Destination, Lookup, MeshState};

/// How the agent's copy relates to the control plane's, for `GET /v1/config` and status.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SyncStats {
    pub epoch: String,
    pub version: u64,
    pub connected: bool,
    /// Full snapshots received: 1 after the first connection; a resume adds none.
    pub snapshots: u64,
    pub deltas: u64,
    pub nacks: u64,
    pub last_nack: Option<String>,
    pub workloads: usize,
    pub policies: usize,
    pub revocations: usize,
}

#[derive(Debug, Clone)]
pub struct MeshConfig {
    state: Arc<tokio::sync::watch::Sender<Arc<MeshState>>>,
    stats: Arc<Mutex<SyncStats>>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            state: Arc::new(tokio::sync::watch::channel(Arc::default()).0),
            stats: Arc::default(),
        }
    }
}

impl MeshConfig {
    pub fn current(&self) -> Arc<MeshState> {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<MeshState>> {
        self.state.subscribe()
    }

    pub fn lookup(&self, ip: IpAddr) -> Lookup {
        self.state.borrow().lookup(ip)
    }

    /// Whether the control plane's first version has been applied: until then the agent
    /// admits no stream (it could not tell what policy or revocation forbids it).
    pub fn is_ready(&self) -> bool {
        self.state.borrow().is_applied()
    }

    pub fn version(&self) -> u64 {
        self.state.borrow().version
    }

    /// Completes once the applied configuration has reached `version` or later.
    pub async fn wait_for_version(&self, version: u64) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| s.version >= version).await;
    }

    pub fn stats(&self) -> SyncStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update_stats(&self, change: impl FnOnce(&mut SyncStats)) {
        change(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Applies `update` as the watch would (tests without a control plane).
    #[cfg(test)]
    pub(crate) fn apply_for_test(
        &self,
        update: &ferrule_proto::v1::ConfigUpdate,
        td: &ferrule_identity::TrustDomain,
    ) {
        let next = self.current().apply(update, td).expect("a valid update");
        self.install(next, update.snapshot);
    }

    /// Installs `next` and records it in the stats.
    fn install(&self, next: MeshState, snapshot: bool) {
        let (workloads, policies, revocations) = next.counts();
        let ambiguous = next.ambiguous_addresses();
        if ambiguous > 0 {
            tracing::warn!(
                version = next.version,
                ambiguous,
                "the directory has addresses several workloads claim; connections to them are refused"
            );
        }
        self.update_stats(|s| {
            s.epoch = next.epoch.clone();
            s.version = next.version;
            s.workloads = workloads;
            s.policies = policies;
            s.revocations = revocations;
            match snapshot {
                true => s.snapshots += 1,
                false => s.deltas += 1,
            }
        });
        self.state.send_replace(Arc::new(next));
    }
}
