//! What one client, source address or node may cost the control plane: connection admission on
//! the listeners, HTTP/2 limit hits, per-node call quotas and `Node.Join` rate limits. The
//! numbers come from the `limits:` config section; every refusal is counted in
//! [`crate::metrics::Metrics`].

pub mod admission;
pub mod bucket;
pub mod h2_watch;
pub mod header_list;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};
use tonic::Status;

use crate::config::LimitsConfig;
use crate::metrics::Metrics;
use crate::sources::JoinRefusal;
use admission::{Admission, Admitted, Refusal, Source};
use bucket::{KeyedBuckets, TokenBucket};

/// Buckets kept per kind of key; past this, idle ones are forgotten (see [`KeyedBuckets`]).
const MAX_KEYS: usize = 65536;

/// Which listener a connection came to, for the `listener` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Grpc,
    Public,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Public => "public",
        }
    }
}

/// Calls of a node that have a quota, for the `call` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCall {
    Register,
    Sign,
    HandshakeReport,
}

impl NodeCall {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Sign => "sign",
            Self::HandshakeReport => "handshake_report",
        }
    }
}

/// Per-node quotas and the `Node.Join` rate limits.
#[derive(Debug)]
pub struct Quotas {
    register: KeyedBuckets<String>,
    sign: KeyedBuckets<String>,
    reports: KeyedBuckets<String>,
    join_per_source: KeyedBuckets<Source>,
    join_total: TokenBucket,
    join_slots: Semaphore,
}

impl Quotas {
    pub fn new(limits: &LimitsConfig) -> Self {
        Self {
            register: KeyedBuckets::new(limits.register, MAX_KEYS),
            sign: KeyedBuckets::new(limits.sign, MAX_KEYS),
            reports: KeyedBuckets::new(limits.handshake_reports, MAX_KEYS),
            join_per_source: KeyedBuckets::new(limits.join_per_source, MAX_KEYS),
            join_total: TokenBucket::new(limits.join_total),
            join_slots: Semaphore::new(limits.join_max_in_flight),
        }
    }

    /// Takes one `call` from `node`'s quota; RESOURCE_EXHAUSTED (counted and logged) when spent.
    pub fn node_call(&self, metrics: &Metrics, node: &str, call: NodeCall) -> Result<(), Status> {
        let buckets = match call {
            NodeCall::Register => &self.register,
            NodeCall::Sign => &self.sign,
            NodeCall::HandshakeReport => &self.reports,
        };
        if buckets.take(&node.to_owned()) {
            return Ok(());
        }
        metrics.quota_exceeded(node, call);
        tracing::warn!(
            node,
            call = call.as_str(),
            "node over its quota; call refused"
        );
        Err(Status::resource_exhausted(format!(
            "node {node} is over its {} quota (limits.per_node.{}); retry later",
            call.as_str(),
            quota_field(call),
        )))
    }

    /// Takes one join from the caller's source and from the total.
    pub fn join(&self, source: Option<IpAddr>) -> Result<(), JoinRefusal> {
        if let Some(ip) = source
            && !self.join_per_source.take(&Source::of(ip))
        {
            return Err(JoinRefusal::SourceRateLimited);
        }
        if !self.join_total.take() {
            return Err(JoinRefusal::RateLimited);
        }
        Ok(())
    }
}

impl Quotas {
    /// A turn to check a join; waits (counted) while `limits.join.max_in_flight` are checked.
    pub async fn join_slot(&self, metrics: &Metrics) -> SemaphorePermit<'_> {
        if let Ok(slot) = self.join_slots.try_acquire() {
            return slot;
        }
        metrics.limit_hit(Listener::Grpc, "join.max_in_flight");
        self.join_slots
            .acquire()
            .await
            .expect("the join semaphore is never closed")
    }
}

fn quota_field(call: NodeCall) -> &'static str {
    match call {
        NodeCall::Register => "register",
        NodeCall::Sign => "sign",
        NodeCall::HandshakeReport => "handshake_reports",
    }
}

/// A slot for a connection from `remote` on `listener`, or `None` (counted) when a connection
/// limit is reached; the caller then drops the connection, which closes it.
pub fn admit(
    listener: Listener,
    admission: &Arc<Admission>,
    remote: SocketAddr,
    metrics: &Metrics,
) -> Option<Admitted> {
    let refusal = match admission.admit(remote.ip()) {
        Ok(admitted) => return Some(admitted),
        Err(refusal) => refusal,
    };
    let limit = match (listener, refusal) {
        (Listener::Grpc, Refusal::Total) => "connections.max",
        (Listener::Grpc, Refusal::PerSource) => "connections.per_source",
        (Listener::Public, Refusal::Total) => "public_connections.max",
        (Listener::Public, Refusal::PerSource) => "public_connections.per_source",
    };
    metrics.limit_hit(listener, limit);
    // Debug only: under a flood this would be a line per connection.
    tracing::debug!(listener = listener.as_str(), %remote, limit, "connection refused");
    None
}
