//! `ferrule node`: join tokens for new nodes, and the list of nodes that joined.

use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use ferrule_identity::{IdKind, IdPattern, SpiffeId, TrustDomain};
use ferrule_proto::v1;
use ipnet::IpNet;
use serde::Serialize;

use crate::client::{ConnectArgs, ControlPlane};
use crate::output::{self, Format, Table};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Single-use join tokens for bootstrapping node agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List the nodes that have joined
    ///
    /// Table columns: NAME, SPIFFE ID, POD CIDRS and ALLOWED (comma-separated), JOINED (RFC 3339
    /// UTC). JSON: an array of {"name", "spiffe_id", "pod_cidrs": [..], "allow": [..], "joined_at"}.
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Offboard a node: revoke it and every certificate issued through it, drop its workloads
    /// from the directory and delete its record (its open connections close at once). It can
    /// join again only after `ferrule revoke --lift --node`.
    Remove {
        #[arg(value_name = "NAME", value_parser = parse_node_name)]
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a single-use, expiring token with which a node agent joins the mesh
    ///
    /// Table output is the token alone on stdout (T=$(ferrule node token create ...)); the
    /// expiry goes to stderr. JSON: {"token", "node", "expires_at" (RFC 3339 UTC)}.
    #[command(verbatim_doc_comment)]
    Create(TokenCreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct TokenCreateArgs {
    /// Name of the node; it will be spiffe://<td>/node/<NAME>.
    #[arg(long, value_name = "NAME", value_parser = parse_node_name)]
    node: String,
    /// Workload identity pattern the node may request certificates for:
    /// spiffe://<td>/ns/<namespace>/sa/<service-account>, where `*` matches within one
    /// segment; repeat for several, e.g. --allow 'spiffe://example.org/ns/shop/sa/*'.
    #[arg(long = "allow", value_name = "PATTERN", value_parser = parse_pattern)]
    allow: Vec<IdPattern>,
    /// Network the node's pods get addresses from, e.g. 10.244.1.0/24; repeat for IPv6. The node
    /// may register workloads only at these addresses (none: it can register no workloads), and
    /// no two nodes' networks may overlap.
    #[arg(long = "pod-cidr", value_name = "CIDR", value_parser = parse_pod_cidr)]
    pod_cidrs: Vec<IpNet>,
    /// How long the token stays usable, e.g. 30m, 1h, 2h30m.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub async fn run(cmd: NodeCommand, format: Format) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Token(TokenCommand::Create(args)) => create_token(args, format).await,
        NodeCommand::List { connect } => list(&connect, format).await,
        NodeCommand::Remove { name, connect } => remove(name, &connect, format).await,
    }
}

/// Node names become a SPIFFE path segment; checking here makes a bad name a usage error.
pub fn parse_node_name(s: &str) -> Result<String, String> {
    let probe = TrustDomain::new("example.org").expect("constant trust domain");
    match SpiffeId::node(&probe, s) {
        // `a/b` would parse as a longer path, so insist the name came back as one segment.
        Ok(id) if id.kind() == IdKind::Node(s) => Ok(s.to_owned()),
        _ => Err("use letters, digits, `.`, `-` and `_` only (one path segment)".into()),
    }
}

fn parse_pattern(s: &str) -> Result<IdPattern, String> {
    IdPattern::parse_workload(s).map_err(|e| e.to_string())
}

/// The server checks overlaps; here only the form, so a typo is a usage error.
fn parse_pod_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse()
        .map_err(|_| "expected a network such as 10.244.1.0/24 or fd00:10:244:1::/64".to_owned())?;
    if net.trunc() != net {
        return Err(format!("host bits are set; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

/// Whole seconds only: the API counts seconds, and a sub-second token would be useless.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl =
        humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30m, 1h, 2h30m)"))?;
    if ttl < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(Duration::from_secs(ttl.as_secs()))
}

#[derive(Debug, Serialize)]
struct TokenReport {
    token: String,
    node: String,
    expires_at: String,
}

async fn create_token(args: TokenCreateArgs, format: Format) -> anyhow::Result<()> {
    let cp = ControlPlane::connect(&args.connect).await?;
    check_trust_domain(&args.allow, cp.trust_domain())?;
    let request = v1::CreateJoinTokenRequest {
        node: args.node.clone(),
        allow: args.allow.iter().map(|p| p.as_str().to_owned()).collect(),
        pod_cidrs: args.pod_cidrs.iter().map(IpNet::to_string).collect(),
        ttl_seconds: args.ttl.as_secs(),
    };
    let response = cp
        .call(|mut admin| async move { admin.create_join_token(request).await })
        .await?;
    let valid_for =
        u64::try_from(response.expires_at.saturating_sub(output::now_secs())).unwrap_or(0);
    let report = TokenReport {
        token: response.token,
        node: args.node,
        expires_at: output::rfc3339(response.expires_at),
    };
    match format {
        Format::Json => output::print_json(&report),
        Format::Table => {
            eprintln!(
                "single-use join token for node {} (expires {}, in {})",
                report.node,
                report.expires_at,
                output::short_duration(valid_for)
            );
            output::print(&format!("{}\n", report.token))
        }
    }
}

/// Caught before the call so the message can say which trust domain the admin certificate is in.
fn check_trust_domain(allow: &[IdPattern], td: &TrustDomain) -> anyhow::Result<()> {
    if let Some(p) = allow.iter().find(|p| p.trust_domain_str() != td.as_str()) {
        bail!(
            "--allow {p}: outside the trust domain {td} of the admin certificate; nodes can only \
             be granted identities of their own trust domain"
        );
    }
    Ok(())
}

async fn remove(node: String, connect: &ConnectArgs, format: Format) -> anyhow::Result<()> {
    let cp = ControlPlane::connect(connect).await?;
    let request = v1::RemoveNodeRequest { node: node.clone() };
    let response = cp
        .call(|mut admin| async move { admin.remove_node(request).await })
        .await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "node": node,
            "version": response.version,
            "revoked_serials": response.serials,
            "workloads_removed": response.workloads,
        })),
        Format::Table => output::print(&format!(
            "node {node} removed: {} certificate(s) revoked, {} workload(s) dropped (configuration version {})\n",
            response.serials.len(),
            response.workloads,
            response.version
        )),
    }
}

#[derive(Debug, Serialize)]
struct NodeRow {
    name: String,
    spiffe_id: String,
    pod_cidrs: Vec<String>,
    allow: Vec<String>,
    joined_at: String,
}

async fn list(connect: &ConnectArgs, format: Format) -> anyhow::Result<()> {
    let cp = ControlPlane::connect(connect).await?;
    let mut nodes = cp
        .call(|mut admin| async move { admin.list_nodes(v1::ListNodesRequest {}).await })
        .await?
        .nodes;
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<NodeRow> = nodes
        .into_iter()
        .map(|n| NodeRow {
            name: n.name,
            spiffe_id: n.spiffe_id,
            pod_cidrs: n.pod_cidrs,
            allow: n.allow,
            joined_at: output::rfc3339(n.joined_at),
        })
        .collect();
    match format {
        Format::Json => output::print_json(&rows),
        Format::Table => {
            if rows.is_empty() {
                eprintln!("no node has joined yet (create a token: ferrule node token create)");
            }
            output::print(&node_table(&rows))
        }
    }
}

fn node_table(rows: &[NodeRow]) -> String {
    let mut table = Table::new(&["NAME", "SPIFFE ID", "POD CIDRS", "ALLOWED", "JOINED"]);
    for r in rows {
        table.row(vec![
            r.name.clone(),
            r.spiffe_id.clone(),
            comma_list(&r.pod_cidrs),
            comma_list(&r.allow),
            r.joined_at.clone(),
        ]);
    }
    table.render()
}

fn comma_list(items: &[String]) -> String {
    match items.is_empty() {
        true => "-".to_owned(),
        false => items.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_is_one_path_segment() {
        assert_eq!(parse_node_name("n-1.a_b"), Ok("n-1.a_b".to_owned()));
        for bad in ["", "a/b", "..", "n 1", "n?"] {
            assert!(parse_node_name(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn ttl_is_whole_seconds_and_positive() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90s 500ms"), Ok(Duration::from_secs(90)));
        assert!(parse_ttl("500ms").is_err());
        assert!(parse_ttl("soon").unwrap_err().contains("examples"));
    }

    #[test]
    fn allow_patterns_must_match_the_admin_trust_domain() {
        let td = TrustDomain::new("example.org").unwrap();
        let ok = IdPattern::parse("spiffe://example.org/ns/shop/sa/*").unwrap();
        let other = IdPattern::parse("spiffe://evil.org/ns/shop/sa/*").unwrap();
        assert!(check_trust_domain(std::slice::from_ref(&ok), &td).is_ok());
        let err = check_trust_domain(&[ok, other], &td)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("evil.org") && err.contains("example.org"),
            "{err}"
        );
    }
}
