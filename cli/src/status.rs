//! `ferrule status`: the configuration version and where every agent is with it.

use clap::Args;
use ferrule_proto::v1;
use serde::Serialize;

use crate::client::{ConnectArgs, ControlPlane};
use crate::output::{self, Format, Table};

/// Show the control plane's configuration version and every agent's applied version
///
/// Table columns: NODE, CONNECTED, APPLIED (version), LAG (versions behind), LAST ACK, NACK
/// (the last refused version and why). JSON: {"epoch", "version", "agents": [..]}.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Serialize)]
struct AgentRow {
    node: String,
    connected: bool,
    applied_version: u64,
    lag: u64,
    last_ack: Option<String>,
    nacked_version: Option<u64>,
    nack_reason: Option<String>,
    snapshots_sent: u64,
    deltas_sent: u64,
}

#[derive(Debug, Serialize)]
struct Status {
    epoch: String,
    version: u64,
    agents: Vec<AgentRow>,
}

pub async fn run(args: StatusArgs, format: Format) -> anyhow::Result<()> {
    let cp = ControlPlane::connect(&args.connect).await?;
    let response = cp
        .call(|mut admin| async move { admin.status(v1::StatusRequest {}).await })
        .await?;
    let version = response.version;
    let status = Status {
        epoch: response.epoch,
        version,
        agents: response
            .agents
            .into_iter()
            .map(|a| AgentRow {
                lag: version.saturating_sub(a.applied_version),
                last_ack: (a.last_ack_ms > 0).then(|| output::rfc3339(a.last_ack_ms / 1000)),
                nacked_version: (a.nacked_version > 0).then_some(a.nacked_version),
                nack_reason: (!a.nack_reason.is_empty()).then_some(a.nack_reason),
                node: a.node,
                connected: a.connected,
                applied_version: a.applied_version,
                snapshots_sent: a.snapshots_sent,
                deltas_sent: a.deltas_sent,
            })
            .collect(),
    };
    match format {
        Format::Json => output::print_json(&status),
        Format::Table => output::print(&render(&status)),
    }
}

fn render(status: &Status) -> String {
    let mut text = format!(
        "control plane: configuration version {} (epoch {})\n",
        status.version, status.epoch
    );
    if status.agents.is_empty() {
        text.push_str("no agent has connected since the control plane started\n");
        return text;
    }
    let mut table = Table::new(&["NODE", "CONNECTED", "APPLIED", "LAG", "LAST ACK", "NACK"]);
    for a in &status.agents {
        let nack = match (&a.nacked_version, &a.nack_reason) {
            (Some(v), Some(reason)) => format!("{v}: {reason}"),
            _ => "-".into(),
        };
        table.row(vec![
            a.node.clone(),
            if a.connected { "yes" } else { "no" }.into(),
            a.applied_version.to_string(),
            a.lag.to_string(),
            a.last_ack.clone().unwrap_or_else(|| "-".into()),
            nack,
        ]);
    }
    text.push_str(&table.render());
    text
}
