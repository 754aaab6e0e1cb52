//! `ferrule check`: pre-flight checks of this node, the control plane and the CA files. Each
//! check passes (✔), needs a look (!) or fails (✘), and says what to do when it is not ✔.
//!
//! The node checks are the ones the agent shares (`ferrule_node_checks`, see `node`), so
//! `ferrule check` judges a node exactly as the agent will need it.

mod ca;
mod kubernetes;
mod node;
mod remote;

use std::time::SystemTime;

use clap::{Args, ValueEnum};
use ferrule_config::check::{Check, Status};
use serde::Serialize;

use crate::client::ConnectArgs;
use crate::output::{self, Format};

/// Pre-flight checks of this node, the control plane and the CA, each with a fix when it fails
///
/// node           kernel version and BTF; the eBPF program types and helpers the capture uses
///                (probed by loading test programs); bpffs for --pin-dir; a cgroup v2 mount;
///                the privileges the agent needs (run as the agent would run).
/// kubernetes     when a kubeconfig is found (KUBECONFIG, ~/.kube/config, in-cluster) or with
///                --kubernetes: the API server answers; its user holds every permission of the
///                installer's ClusterRole for --component (SelfSubjectAccessReview, so run it
///                with that component's credentials); ferrule-cni is chained in --cni-conf-dir;
///                this node (--node, FERRULE_NODE_NAME) no longer carries the
///                ferrule.io/agent-not-ready taint. Without a kubeconfig they are skipped,
///                unless --kubernetes or `--only kubernetes` asks for them (then they fail).
/// control-plane  an Admin call with the admin identity; clock skew against the control plane.
/// ca             bundle.pem; chain.pem (with --ca-dir) up to the bundle; the offline CAs'
///                CRLs (ca-crls.pem, with --ca-dir: signed by them, not expiring within 30
///                days); admin.crt; how long the issuing CA has left.
///
/// Table: one line per check, ✔ passed, ! warning, ✘ failed, with a `fix:` line under each
/// warning and failure, then a summary. JSON: {"ok", "checks": [{"name", "group", "ok",
/// "status" ("ok", "warn" or "fail"), "detail", "hint" (warnings and failures only)}]}.
/// Exits 1 if any check failed; warnings do not fail.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CheckArgs {
    /// Run only this group of checks; repeat for several.
    #[arg(long, value_enum, value_name = "GROUP")]
    only: Vec<Group>,
    #[command(flatten)]
    node: node::NodeArgs,
    #[command(flatten)]
    kubernetes: kubernetes::KubernetesArgs,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Group {
    /// Kernel, eBPF support, bpffs, cgroup v2, privileges.
    Node,
    /// API server reachable, RBAC, CNI chained, the node's startup taint.
    Kubernetes,
    /// Reachability with the admin identity, clock skew.
    ControlPlane,
    /// Trust bundle, issuing chain, admin certificate.
    Ca,
}

/// One check as printed (and as an element of the JSON `checks` array).
#[derive(Debug, Serialize)]
struct Item {
    name: &'static str,
    group: Group,
    ok: bool,
    status: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
    #[serde(skip)]
    mark: char,
}

impl Item {
    fn new(group: Group, check: Check) -> Self {
        let (status, mark) = match check.status {
            Status::Ok => ("ok", '✔'),
            Status::Warn => ("warn", '!'),
            Status::Fail => ("fail", '✘'),
        };
        Self {
            name: check.name,
            group,
            ok: check.is_ok(),
            status,
            detail: check.detail,
            hint: check.hint,
            mark,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Item>,
}

pub async fn run(args: CheckArgs, format: Format) -> anyhow::Result<()> {
    let wanted = |group| args.only.is_empty() || args.only.contains(&group);
    let mut checks = Vec::new();
    let mut add = |group, found: Vec<Check>| {
        checks.extend(found.into_iter().map(|check| Item::new(group, check)));
    };
    if wanted(Group::Node) {
        add(Group::Node, node::checks(&args.node));
    }
    if wanted(Group::Kubernetes) {
        let asked = args.only.contains(&Group::Kubernetes);
        add(
            Group::Kubernetes,
            kubernetes::checks(&args.kubernetes, asked).await,
        );
    }
    if wanted(Group::ControlPlane) {
        add(Group::ControlPlane, remote::checks(&args.connect).await);
    }
    if wanted(Group::Ca) {
        add(Group::Ca, ca::checks(&args.connect, SystemTime::now()));
    }
    let report = Report {
        ok: checks.iter().all(|item| item.ok),
        checks,
    };
    match format {
        Format::Json => output::print_json(&report)?,
        Format::Table => output::print(&render(&report.checks))?,
    }
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|item| !item.ok)
        .map(|item| item.name)
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} checks failed: {}",
            failed.len(),
            report.checks.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// `✔ name  detail` per check, the fix indented below the detail, then a summary line.
fn render(checks: &[Item]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for c in checks {
        text.push_str(&format!("{} {:<width$}  {}\n", c.mark, c.name, c.detail));
        if let Some(hint) = &c.hint {
            text.push_str(&format!("{:indent$}fix: {hint}\n", "", indent = width + 4));
        }
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    text.push_str(&format!(
        "{} checks: {} passed, {} warned, {} failed\n",
        checks.len(),
        count("ok"),
        count("warn"),
        count("fail")
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_puts_fixes_under_the_detail_and_sums_up() {
        let checks = [
            Item::new(Group::Node, Check::ok("kernel", "Linux 6.1.0")),
            Item::new(
                Group::ControlPlane,
                Check::fail("clock-skew", "this clock is 9.000 s behind", "run chrony"),
            ),
            Item::new(
                Group::Ca,
                Check::warn("admin-cert", "expires soon", "renew it"),
            ),
        ];
        assert_eq!(
            render(&checks),
            "✔ kernel      Linux 6.1.0\n\
             ✘ clock-skew  this clock is 9.000 s behind\n\
             \x20             fix: run chrony\n\
             ! admin-cert  expires soon\n\
             \x20             fix: renew it\n\
             3 checks: 1 passed, 1 warned, 1 failed\n"
        );
    }
}
