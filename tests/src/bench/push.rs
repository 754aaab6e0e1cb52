//! `bench push`: how fast a change reaches every agent. One control plane (the real binary) and
//! N simulated agents, each a node with its own certificate, connection and `Config.Watch`
//! stream. Each round makes one change — a revocation or a policy, through the `ferrule` CLI or
//! the Admin RPC — and measures from just before the change is made to the instant the last
//! agent has applied (received and ACKed) the version the control plane answered with; after
//! the round the control plane's own record of the ACKs (`Admin.Status`) is checked too.
//! Control-plane memory is read before the agents join, once they have, and with every stream
//! open.
//!
//! The agents run in this process on the same two cores as the control plane, so their TLS and
//! decoding work is on the clock as well: the figures are an upper bound for the control plane.

mod agent;
mod fleet;
mod table;
mod trigger;

use std::time::{Duration, Instant};

use ferrule_proto::v1::{self, admin_client::AdminClient};
use tonic::transport::Channel;

use crate::ControlPlaneFixture;
use crate::process::raise_open_files_limit;
use fleet::Fleet;
use trigger::Triggers;

pub use table::print;
pub use trigger::Trigger;

/// Agents that request the workload certificates the revocation rounds revoke.
const ISSUERS: usize = 4;
/// How long the control plane may take to show an ACK the agent already sent.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Options {
    pub agents: usize,
    /// Rounds of each trigger.
    pub rounds: usize,
    /// Agents joined, or connected, at once.
    pub batch: usize,
    /// How long a round may take before it counts as incomplete.
    pub round_timeout: Duration,
}

/// One change and how it reached the agents.
#[derive(Debug, Clone)]
pub struct Round {
    pub trigger: Trigger,
    /// The version the control plane answered the change with.
    pub version: u64,
    /// Until the trigger returned (the CLI exited, or the RPC answered).
    pub call: Duration,
    /// Until the first agent applied the version (`None`: none did in time).
    pub first_ack: Option<Duration>,
    /// Until the last agent applied the version (`None`: not every agent did in time).
    pub last_ack: Option<Duration>,
    /// Agents that applied the version (or a later one) in time.
    pub applied: usize,
    /// Agents the control plane lists as having applied it, checked after the round.
    pub confirmed: usize,
    /// Control-plane CPU time from the trigger until the round was confirmed (the one or few
    /// `Admin.Status` calls that confirm it included).
    pub cp_cpu: Duration,
}

/// Control-plane resident memory in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Started, before any agent joined.
    pub before: u64,
    /// Every agent joined (node records, certificates), no stream open yet.
    pub joined: u64,
    /// Every agent's watch stream open and its snapshot applied.
    pub connected: u64,
    /// After the last round.
    pub end: u64,
}

#[derive(Debug)]
pub struct Report {
    pub agents: usize,
    pub rounds: Vec<Round>,
    pub memory: Memory,
    pub join_time: Duration,
    pub connect_time: Duration,
    /// The soft limit on open files this process and the control plane ran with.
    pub open_files_limit: u64,
    /// Refused deltas and ended streams the agents reported.
    pub failures: Vec<String>,
    /// Snapshots agents received after their first (a control plane that lost track of them).
    pub resyncs: usize,
}

pub async fn run(options: &Options) -> Report {
    // One socket per agent here and in the control plane (which inherits the limit), plus the
    // joins in flight, the store and the CLI.
    let needed = options.agents as u64 + 2 * options.batch as u64 + 256;
    let open_files_limit = raise_open_files_limit(needed).unwrap_or_else(|e| {
        panic!(
            "{} agents need {needed} open files; raising RLIMIT_NOFILE failed: {e}",
            options.agents
        )
    });
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let work = tempfile::tempdir().expect("temporary directory");
    let rss = |cp: &ControlPlaneFixture| cp.process().rss_kib();
    let before = rss(&cp);

    let start = Instant::now();
    let channels = fleet::join(&cp, options.agents, options.batch).await;
    let join_time = start.elapsed();
    let joined = rss(&cp);
    let start = Instant::now();
    let fleet = Fleet::connect(&channels, options.batch).await;
    let connect_time = start.elapsed();
    let connected = rss(&cp);

    let issuers = &channels[..channels.len().min(ISSUERS)];
    let triggers = Triggers::prepare(&cp, issuers, options.rounds, work.path()).await;
    let mut bench = Bench {
        fleet,
        triggers,
        admin: cp.admin(),
        cp,
        _work: work,
    };
    let mut rounds = Vec::new();
    for round in 0..options.rounds {
        for trigger in Trigger::ALL {
            rounds.push(bench.round(trigger, round, options.round_timeout).await);
        }
    }
    Report {
        agents: options.agents,
        rounds,
        memory: Memory {
            before,
            joined,
            connected,
            end: rss(&bench.cp),
        },
        join_time,
        connect_time,
        open_files_limit,
        failures: std::mem::take(&mut bench.fleet.failures),
        resyncs: bench.fleet.resyncs,
    }
}

/// What the rounds work with; the agents stop before the control plane does.
struct Bench {
    fleet: Fleet,
    triggers: Triggers,
    admin: AdminClient<Channel>,
    cp: ControlPlaneFixture,
    /// Holds the policy files.
    _work: tempfile::TempDir,
}

impl Bench {
    async fn round(&mut self, trigger: Trigger, round: usize, timeout: Duration) -> Round {
        let cpu = self.cp.process().cpu_time();
        let start = Instant::now();
        let version = self.triggers.fire(trigger, round).await;
        let call = start.elapsed();
        let reached = self.fleet.wait_for(version, start + timeout).await;
        let applied = reached.iter().flatten().count();
        let since_start = |at: &Instant| at.duration_since(start);
        let first_ack = reached.iter().flatten().min().map(since_start);
        let last_ack = match applied == self.fleet.agents() {
            true => reached.iter().flatten().max().map(since_start),
            false => None,
        };
        let confirmed = self.confirmed(version).await;
        Round {
            trigger,
            version,
            call,
            first_ack,
            last_ack,
            applied,
            confirmed,
            cp_cpu: self.cp.process().cpu_time().saturating_sub(cpu),
        }
    }

    /// How many agents the control plane lists as having applied `version`, waiting a little
    /// for ACKs still on their way.
    async fn confirmed(&mut self, version: u64) -> usize {
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        loop {
            let status = self
                .admin
                .status(v1::StatusRequest {})
                .await
                .expect("Admin.Status")
                .into_inner();
            let confirmed = status
                .agents
                .iter()
                .filter(|a| a.node.starts_with(fleet::NODE_PREFIX) && a.applied_version >= version)
                .count();
            if confirmed >= self.fleet.agents() || Instant::now() >= deadline {
                return confirmed;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
