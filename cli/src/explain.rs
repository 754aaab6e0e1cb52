//! `ferrule explain`: the authorization decision for a connection, and the rule behind it.

use clap::Args;
use ferrule_proto::v1;
use serde::Serialize;

use crate::client::{ConnectArgs, ControlPlane};
use crate::output::{self, Format};

/// Explain whether SOURCE may open a connection to DESTINATION, and which rule decides
///
/// SOURCE is a SPIFFE ID or a workload (namespace/name, pod uid or IP); DESTINATION is a
/// workload and port, e.g. 10.244.0.10:8080 or shop/api-0:8080.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ExplainArgs {
    source: String,
    destination: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Serialize)]
struct Explanation {
    source: String,
    destination: String,
    destination_id: String,
    port: u32,
    verdict: String,
    rule: String,
    explanation: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    revoked: String,
    handshake_failures: Vec<Failure>,
}

/// A failed handshake between the two, as an agent reported it.
#[derive(Debug, Serialize)]
struct Failure {
    reason: String,
    /// `server`: the destination's agent refused the client; `client`: the source's agent
    /// refused the server.
    side: String,
    count: u32,
    last_seen: String,
    node: String,
    source_address: String,
    detail: String,
}

pub async fn run(args: ExplainArgs, format: Format) -> anyhow::Result<()> {
    let request = v1::ExplainRequest {
        source: args.source,
        destination: args.destination,
        port: 0,
    };
    let cp = ControlPlane::connect(&args.connect).await?;
    let response = cp
        .call(|mut admin| async move { admin.explain(request).await })
        .await?;
    let destination = response.destination.unwrap_or_default();
    let report = Explanation {
        source: response.source_id,
        destination: format!("{}/{}", destination.namespace, destination.name),
        destination_id: destination.spiffe_id,
        port: response.port,
        verdict: response.verdict,
        rule: response.rule,
        explanation: response.explanation,
        revoked: response.revoked,
        handshake_failures: response
            .handshake_failures
            .into_iter()
            .map(|f| Failure {
                reason: f.reason,
                side: f.side,
                count: f.count,
                last_seen: output::rfc3339(f.last_seen_ms / 1000),
                node: f.node,
                source_address: f.source_address,
                detail: f.detail,
            })
            .collect(),
    };
    match format {
        Format::Json => output::print_json(&report),
        Format::Table => {
            let mut text = format!(
                "source:      {}\ndestination: {} ({}) port {}\ndecision:    {}\nrule:        {}\n",
                report.source,
                report.destination,
                report.destination_id,
                report.port,
                report.explanation,
                report.rule
            );
            if !report.revoked.is_empty() {
                text.push_str(&format!("revoked:     {}\n", report.revoked));
            }
            if !report.handshake_failures.is_empty() {
                text.push_str("handshake failures seen between them (most recent first):\n");
            }
            for f in &report.handshake_failures {
                text.push_str(&format!(
                    "  {} x{} (last {}, {} side, seen by {} from {}): {}\n",
                    f.reason, f.count, f.last_seen, f.side, f.node, f.source_address, f.detail
                ));
            }
            output::print(&text)
        }
    }
}
