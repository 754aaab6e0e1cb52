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
            output::print(&text)
        }
    }
}
