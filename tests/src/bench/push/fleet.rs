//! The simulated agents as a whole: joined as nodes in concurrent batches, connected in batches,
//! and followed through their events to the instant each one applied a given version.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrule_identity::SharedBundle;
use ferrule_identity::tls::CertSlot;
use ferrule_proto::v1::{self, admin_client::AdminClient};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::Channel;

use super::agent::{self, Event};
use crate::ControlPlaneFixture;

/// The identities every simulated node may request certificates for.
const ALLOW: &str = "spiffe://example.org/ns/bench/sa/*";
/// How long one batch of agents may take to join, or to connect and apply its snapshot.
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

/// How the simulated nodes' names start.
pub const NODE_PREFIX: &str = "bench-";

fn node_name(agent: usize) -> String {
    format!("{NODE_PREFIX}{agent}")
}

/// Joins `count` nodes, `batch` at a time concurrently, each with a token from one admin
/// connection; returns each node's channel (lazy: it connects on first use).
pub async fn join(cp: &ControlPlaneFixture, count: usize, batch: usize) -> Vec<Channel> {
    let admin = cp.admin();
    let bundle = cp.bundle();
    let mut channels = Vec::with_capacity(count);
    for first in (0..count).step_by(batch.max(1)) {
        let mut joining = JoinSet::new();
        for agent in first..(first + batch).min(count) {
            joining.spawn(join_one(admin.clone(), cp.addr, bundle.clone(), agent));
        }
        let mut joined = tokio::time::timeout(BATCH_TIMEOUT, joining.join_all())
            .await
            .unwrap_or_else(|_| panic!("nodes {first}.. did not join within {BATCH_TIMEOUT:?}"));
        joined.sort_by_key(|(agent, _)| *agent);
        channels.extend(joined.into_iter().map(|(_, channel)| channel));
    }
    channels
}

async fn join_one(
    mut admin: AdminClient<Channel>,
    addr: SocketAddr,
    bundle: SharedBundle,
    agent: usize,
) -> (usize, Channel) {
    let node = node_name(agent);
    let request = v1::CreateJoinTokenRequest {
        node: node.clone(),
        allow: vec![ALLOW.into()],
        ttl_seconds: 600,
        ..Default::default()
    };
    let token = admin
        .create_join_token(request)
        .await
        .unwrap_or_else(|e| panic!("a join token for {node}: {e}"))
        .into_inner()
        .token;
    let (_, cert) = ferrule_node_agent::control::join(
        addr,
        &bundle,
        ferrule_node_agent::control::JoinCredential::Token(&token),
    )
    .await
    .unwrap_or_else(|e| panic!("joining {node}: {e}"));
    let slot = Arc::new(CertSlot::new(cert.certified.clone()));
    let channel = ferrule_node_agent::control::node_channel(addr, &bundle, slot);
    (agent, channel)
}

/// The running agents and what they reported.
pub struct Fleet {
    tasks: Vec<JoinHandle<()>>,
    events: mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
    /// The last version each agent applied.
    applied: Vec<u64>,
    /// Agents whose stream ended: no round waits for them.
    ended: Vec<bool>,
    /// Refused deltas and ended streams, as the agents reported them.
    pub failures: Vec<String>,
    /// Snapshots received after the first: an agent the control plane could not send a delta.
    pub resyncs: usize,
}

impl Fleet {
    /// Opens one watch per channel, `batch` at a time: each batch is connected and has applied
    /// its snapshot before the next starts.
    pub async fn connect(channels: &[Channel], batch: usize) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut fleet = Self {
            tasks: Vec::with_capacity(channels.len()),
            events,
            events_tx,
            applied: vec![0; channels.len()],
            ended: vec![false; channels.len()],
            failures: Vec::new(),
            resyncs: 0,
        };
        for first in (0..channels.len()).step_by(batch.max(1)) {
            let last = (first + batch).min(channels.len());
            for (agent, channel) in channels.iter().enumerate().take(last).skip(first) {
                let task = agent::spawn(agent, channel.clone(), fleet.events_tx.clone());
                fleet.tasks.push(task);
            }
            let deadline = Instant::now() + BATCH_TIMEOUT;
            while fleet.applied[first..last].contains(&0) {
                let event = tokio::time::timeout_at(deadline.into(), fleet.events.recv()).await;
                match event {
                    Ok(Some(event)) => {
                        fleet.record(event);
                    }
                    _ => panic!(
                        "agents {first}..{last} did not all apply a snapshot within \
                         {BATCH_TIMEOUT:?}; {} failures, the first: {:?}",
                        fleet.failures.len(),
                        &fleet.failures[..fleet.failures.len().min(3)]
                    ),
                }
            }
        }
        fleet
    }

    /// How many agents there are.
    pub fn agents(&self) -> usize {
        self.applied.len()
    }

    /// The instant each agent applied `version` or a later one, waiting until every agent still
    /// connected has or `deadline` passes (`None` for those that had not by then). Events that
    /// came in while the trigger ran are queued, with the instants the agents took, so none is
    /// lost.
    pub async fn wait_for(&mut self, version: u64, deadline: Instant) -> Vec<Option<Instant>> {
        let mut reached: Vec<Option<Instant>> = vec![None; self.agents()];
        let mut missing = self.ended.iter().filter(|ended| !**ended).count();
        while missing > 0 {
            let event = match tokio::time::timeout_at(deadline.into(), self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) => break,
            };
            if let Event::Ended { agent, .. } = event
                && reached[agent].is_none()
            {
                missing -= 1;
            }
            if let Some((agent, applied, at)) = self.record(event)
                && applied >= version
                && reached[agent].is_none()
            {
                reached[agent] = Some(at);
                missing -= 1;
            }
        }
        reached
    }

    /// Notes an event; returns (agent, version, instant) of an applied update.
    fn record(&mut self, event: Event) -> Option<(usize, u64, Instant)> {
        match event {
            Event::Applied {
                agent,
                version,
                snapshot,
                at,
            } => {
                self.resyncs += usize::from(snapshot && self.applied[agent] > 0);
                self.applied[agent] = self.applied[agent].max(version);
                Some((agent, version, at))
            }
            Event::Refused { agent, reason } => {
                self.failures
                    .push(format!("agent {agent} refused an update: {reason}"));
                None
            }
            Event::Ended { agent, reason } => {
                self.ended[agent] = true;
                self.failures.push(format!("agent {agent}: {reason}"));
                None
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
