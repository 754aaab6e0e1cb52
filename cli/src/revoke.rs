//! `ferrule revoke`: revoke a certificate, an identity or a node, fleet-wide.

use clap::{ArgGroup, Args};
use ferrule_proto::v1::{self, revoke_request::Target};

use crate::client::{ConnectArgs, ControlPlane};
use crate::output::{self, Format};

/// Revoke a certificate, an identity or a node; every agent refuses it within a second
///
/// Agents refuse new handshakes with the revoked certificates and close live tunnels that use
/// them. An identity or node revocation also stops issuance until lifted with --lift (the
/// certificates revoked stay revoked). Revoked serials are listed in the CRL.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
#[command(group(ArgGroup::new("target").required(true).args(["serial", "identity", "node"])))]
pub struct RevokeArgs {
    /// A certificate serial in hex, as `ferrule certs` prints it.
    #[arg(long, value_name = "HEX")]
    serial: Option<String>,
    /// Every certificate of this SPIFFE ID.
    #[arg(long, value_name = "SPIFFE_ID")]
    identity: Option<String>,
    /// A node: its identity and every certificate issued through it.
    #[arg(long, value_name = "NAME", value_parser = crate::node::parse_node_name)]
    node: Option<String>,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    reason: String,
    /// Lift an identity or node revocation so it may obtain certificates again.
    #[arg(long, conflicts_with = "serial")]
    lift: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub async fn run(args: RevokeArgs, format: Format) -> anyhow::Result<()> {
    let target = match (args.serial, args.identity, args.node) {
        (Some(s), _, _) => Target::Serial(s),
        (_, Some(id), _) => Target::SpiffeId(id),
        (_, _, Some(node)) => Target::Node(node),
        _ => unreachable!("clap requires one target"),
    };
    let described = describe(&target);
    let request = v1::RevokeRequest {
        target: Some(target),
        reason: args.reason,
        lift: args.lift,
    };
    let cp = ControlPlane::connect(&args.connect).await?;
    let response = cp
        .call(|mut admin| async move { admin.revoke(request).await })
        .await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "target": described,
            "lifted": args.lift,
            "version": response.version,
            "serials": response.serials,
        })),
        Format::Table if args.lift => output::print(&format!(
            "lifted the revocation of {described} (configuration version {})\n",
            response.version
        )),
        Format::Table => output::print(&format!(
            "revoked {described}: {} certificate(s) {} (configuration version {})\n",
            response.serials.len(),
            response.serials.join(", "),
            response.version
        )),
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Serial(s) => format!("serial {s}"),
        Target::SpiffeId(id) => format!("identity {id}"),
        Target::Node(node) => format!("node {node}"),
    }
}
