//! The agent's own lifecycle: handing its listeners over to a new agent process (an upgrade or
//! a restart with overlap, what a DaemonSet rolling update with `maxSurge` does) and draining
//! the connections it still carries before it exits.
//!
//! A new agent asks the running one over a Unix socket ([`handover`]) for every listening
//! socket it has: the in-pod listeners, the enrollment API, metrics and readiness. It gets the
//! very same sockets (file descriptors passed with `SCM_RIGHTS`), so no connection is refused
//! at any moment and none is load-balanced to a process on its way out (ztunnel's
//! `SO_REUSEPORT` overlap does both). Once the new agent serves every pod it says so; the old
//! one stops accepting and [`Drain`]s: established connections run on until they finish or
//! until `drain_timeout`, when they are closed with close reason `drain`.

mod drain;
pub mod handover;
mod listeners;
mod metrics;
pub mod private_socket;

pub use drain::{Drain, Tracked};
pub use listeners::{Listeners, pod_listener, pod_prefix};
pub use metrics::{AgentRole, LifecycleMetrics};

/// The lifecycle parts every component of a running agent shares.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub listeners: std::sync::Arc<Listeners>,
    pub drain: Drain,
    pub version: AgentVersion,
}

impl Lifecycle {
    /// A fresh start, serving at once.
    pub fn new(
        listeners: Listeners,
        drain_timeout: std::time::Duration,
        program_version: u32,
    ) -> Self {
        Self::with_drain(listeners, Drain::new(drain_timeout), program_version)
    }

    /// A takeover: in-pod listeners accept once [`Drain::serve`] says the predecessor stopped.
    pub fn taking_over(
        listeners: Listeners,
        drain_timeout: std::time::Duration,
        program_version: u32,
    ) -> Self {
        Self::with_drain(
            listeners,
            Drain::taking_over(drain_timeout),
            program_version,
        )
    }

    fn with_drain(listeners: Listeners, drain: Drain, program_version: u32) -> Self {
        Self {
            listeners: std::sync::Arc::new(listeners),
            drain,
            version: AgentVersion::current(program_version),
        }
    }

    /// Completes once draining started (for servers to stop accepting).
    pub fn draining(&self) -> impl Future<Output = ()> + Send + 'static {
        let drain = self.drain.clone();
        async move { drain.draining().await }
    }
}

/// What an agent reports about itself: binary version and eBPF program version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentVersion {
    pub version: String,
    pub program_version: u32,
    pub pid: u32,
}

impl AgentVersion {
    /// This process.
    pub fn current(program_version: u32) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            program_version,
            pid: std::process::id(),
        }
    }
}
