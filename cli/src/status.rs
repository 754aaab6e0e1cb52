//! `ferrule status`: the configuration version and where every agent is with it.

use clap::Args;
use ferrule_proto::v1;
use serde::Serialize;

use crate::client::{ConnectArgs, ControlPlane};
use crate::output::{self, Format, Table};

/// Show the control plane, every joined node and its agent's applied configuration version
///
/// Table columns: NODE, AGENT (connected, disconnected, never connected or revoked), VERSION
/// (agent binary and eBPF program version), STATE (serving, draining, or serving while the
/// previous agent drains after an upgrade), APPLIED (version), LAG (versions behind), LAST ACK,
/// NACK (the last refused version and why).
/// JSON: {"control_plane", "epoch", "version", "nodes": [..]}.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Serialize)]
struct AgentRow {
    node: String,
    /// `connected`, `disconnected`, `never_connected` (since the control plane started), or
    /// `revoked`.
    agent: &'static str,
    connected: bool,
    applied_version: u64,
    lag: u64,
    last_ack: Option<String>,
    nacked_version: Option<u64>,
    nack_reason: Option<String>,
    snapshots_sent: u64,
    deltas_sent: u64,
    /// The agent binary's version, if it reported one.
    agent_version: Option<String>,
    /// The eBPF program version it loaded.
    program_version: Option<u32>,
    /// It handed over to a new agent or was stopped, and drains its connections.
    draining: bool,
    /// The previous agent of the node, still draining after handing over to this one.
    draining_predecessor: Option<Predecessor>,
}

#[derive(Debug, Serialize)]
struct Predecessor {
    agent_version: String,
    program_version: u32,
}

impl AgentRow {
    fn unreported(node: String, agent: &'static str, lag: u64) -> Self {
        Self {
            node,
            agent,
            connected: false,
            applied_version: 0,
            lag,
            last_ack: None,
            nacked_version: None,
            nack_reason: None,
            snapshots_sent: 0,
            deltas_sent: 0,
            agent_version: None,
            program_version: None,
            draining: false,
            draining_predecessor: None,
        }
    }

    fn version_cell(&self) -> String {
        match (&self.agent_version, self.program_version) {
            (Some(version), Some(program)) => format!("{version} eBPF v{program}"),
            _ => "-".into(),
        }
    }

    fn state_cell(&self) -> String {
        match (&self.draining_predecessor, self.draining) {
            (_, true) => "draining".into(),
            (Some(p), false) => format!(
                "serving; previous {} eBPF v{} draining",
                p.agent_version, p.program_version
            ),
            (None, false) if self.agent_version.is_some() => "serving".into(),
            (None, false) => "-".into(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Status {
    control_plane: String,
    epoch: String,
    version: u64,
    /// "embedded" or "etcd".
    store: String,
    /// Why the store does not answer, if it does not.
    store_error: Option<String>,
    /// The replicas sharing an etcd store.
    replicas: Vec<ReplicaRow>,
    nodes: Vec<AgentRow>,
}

#[derive(Debug, Serialize)]
struct ReplicaRow {
    address: String,
    version: u64,
    lag: u64,
    agents: u32,
    leader: bool,
}

pub async fn run(args: StatusArgs, format: Format) -> anyhow::Result<()> {
    let cp = ControlPlane::connect(&args.connect).await?;
    let response = cp
        .call(|mut admin| async move { admin.status(v1::StatusRequest {}).await })
        .await?;
    let store_error = Some(response.store_error).filter(|e| !e.is_empty());
    // Without its store the control plane cannot list nodes; show what it still knows.
    let nodes = cp
        .call(|mut admin| async move { admin.list_nodes(v1::ListNodesRequest {}).await })
        .await
        .map(|r| r.nodes)
        .or_else(|e| store_error.as_ref().map(|_| Vec::new()).ok_or(e))?;
    let revoked = cp
        .call(
            |mut admin| async move { admin.list_revocations(v1::ListRevocationsRequest {}).await },
        )
        .await?
        .revocations;
    let status = Status {
        control_plane: args.connect.address().to_owned(),
        epoch: response.epoch,
        version: response.version,
        store: response.store,
        store_error,
        replicas: response
            .replicas
            .into_iter()
            .map(ReplicaRow::from)
            .collect(),
        nodes: rows(response.version, response.agents, &nodes, &revoked),
    };
    match format {
        Format::Json => output::print_json(&status),
        Format::Table => output::print(&render(&status)),
    }
}

/// One row per joined node, plus agents of nodes no longer listed.
fn rows(
    version: u64,
    agents: Vec<v1::AgentStatus>,
    nodes: &[v1::NodeInfo],
    revocations: &[v1::Revocation],
) -> Vec<AgentRow> {
    let is_revoked = |spiffe_id: &str| {
        revocations.iter().any(
            |r| matches!(&r.target, Some(v1::revocation::Target::SpiffeId(id)) if id == spiffe_id),
        )
    };
    let mut rows: Vec<AgentRow> = agents
        .into_iter()
        .map(|a| {
            let info = a.agent.clone().filter(|i| !i.version.is_empty());
            AgentRow {
                agent_version: info.as_ref().map(|i| i.version.clone()),
                program_version: info.as_ref().map(|i| i.program_version),
                draining: info.as_ref().is_some_and(|i| i.draining),
                draining_predecessor: info
                    .as_ref()
                    .filter(|i| !i.predecessor_version.is_empty())
                    .map(|i| Predecessor {
                        agent_version: i.predecessor_version.clone(),
                        program_version: i.predecessor_program_version,
                    }),
                agent: if a.connected {
                    "connected"
                } else {
                    "disconnected"
                },
                lag: version.saturating_sub(a.applied_version),
                last_ack: (a.last_ack_ms > 0).then(|| output::rfc3339(a.last_ack_ms / 1000)),
                nacked_version: (a.nacked_version > 0).then_some(a.nacked_version),
                nack_reason: (!a.nack_reason.is_empty()).then_some(a.nack_reason),
                node: a.node,
                connected: a.connected,
                applied_version: a.applied_version,
                snapshots_sent: a.snapshots_sent,
                deltas_sent: a.deltas_sent,
            }
        })
        .collect();
    for node in nodes {
        if !rows.iter().any(|r| r.node == node.name) {
            rows.push(AgentRow::unreported(
                node.name.clone(),
                "never_connected",
                version,
            ));
        }
    }
    for row in &mut rows {
        let node = nodes.iter().find(|n| n.name == row.node);
        if node.is_some_and(|n| is_revoked(&n.spiffe_id)) {
            row.agent = "revoked";
        }
    }
    rows.sort_by(|a, b| a.node.cmp(&b.node));
    rows
}

impl From<v1::ReplicaStatus> for ReplicaRow {
    fn from(r: v1::ReplicaStatus) -> Self {
        Self {
            address: r.address,
            version: r.version,
            lag: r.lag,
            agents: r.agents,
            leader: r.leader,
        }
    }
}

/// The store line, and the replicas sharing it.
fn render_store(status: &Status) -> String {
    if let Some(error) = &status.store_error {
        return format!(
            "store: {} UNREACHABLE ({error}); agents keep enforcing the versions they applied\n",
            status.store
        );
    }
    if status.replicas.is_empty() {
        return String::new();
    }
    let mut text = format!(
        "store: {}, {} replica(s)\n",
        status.store,
        status.replicas.len()
    );
    let mut table = Table::new(&["REPLICA", "VERSION", "LAG", "AGENTS", "LEADER"]);
    for r in &status.replicas {
        table.row(vec![
            r.address.clone(),
            r.version.to_string(),
            r.lag.to_string(),
            r.agents.to_string(),
            if r.leader { "yes" } else { "-" }.into(),
        ]);
    }
    text.push_str(&table.render());
    text
}

fn render(status: &Status) -> String {
    let mut text = format!(
        "control plane {}: configuration version {} (epoch {})\n",
        status.control_plane, status.version, status.epoch
    );
    text.push_str(&render_store(status));
    if status.nodes.is_empty() {
        text.push_str("no node has joined yet (create a token: ferrule node token create)\n");
        return text;
    }
    let behind = status.nodes.iter().filter(|n| n.lag > 0).count();
    text.push_str(&format!(
        "{} node(s), {} agent(s) connected, {behind} behind\n",
        status.nodes.len(),
        status.nodes.iter().filter(|n| n.connected).count()
    ));
    let mut table = Table::new(&[
        "NODE", "AGENT", "VERSION", "STATE", "APPLIED", "LAG", "LAST ACK", "NACK",
    ]);
    for a in &status.nodes {
        let nack = match (&a.nacked_version, &a.nack_reason) {
            (Some(v), Some(reason)) => format!("{v}: {reason}"),
            _ => "-".into(),
        };
        table.row(vec![
            a.node.clone(),
            a.agent.replace('_', " "),
            a.version_cell(),
            a.state_cell(),
            a.applied_version.to_string(),
            a.lag.to_string(),
            a.last_ack.clone().unwrap_or_else(|| "-".into()),
            nack,
        ]);
    }
    text.push_str(&table.render());
    text
}
