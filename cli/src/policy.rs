//! `ferrule policy`: authorization policies, applied whole or not at all.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use ferrule_policy::Policy;
use ferrule_proto::v1;
use serde::Serialize;

use crate::client::{ConnectArgs, ControlPlane};
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Add or replace the policies in a YAML file (several documents separated by `---`)
    ///
    /// The file is checked whole before anything is sent: an invalid document (unknown field,
    /// bad SPIFFE ID, bad port, YAML syntax) names the file, document, field and reason, and
    /// nothing is applied. The control plane applies all documents in one version.
    /// Only ALLOW policies put the workloads they select under default deny; DENY and AUDIT
    /// decide only what they name; `spec.defaultAction: deny` makes a namespace (or, without
    /// one, the mesh) zero trust.
    #[command(verbatim_doc_comment)]
    Apply {
        /// The policy file; `-` reads standard input.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print the stored policies (YAML documents; `-o json` for their canonical JSON)
    Get {
        /// Only this policy (`namespace/name`, or `name` for a mesh-wide one).
        name: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete policies by name (`namespace/name`, or `name` for a mesh-wide one)
    Delete {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub async fn run(cmd: PolicyCommand, format: Format) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Apply { file, connect } => apply(&file, &connect, format).await,
        PolicyCommand::Get { name, connect } => get(name.as_deref(), &connect, format).await,
        PolicyCommand::Delete { names, connect } => delete(names, &connect, format).await,
    }
}

fn read_policies(file: &PathBuf) -> anyhow::Result<Vec<Policy>> {
    let (text, origin) = if file.as_os_str() == "-" {
        let text = std::io::read_to_string(std::io::stdin()).context("reading standard input")?;
        (text, "<stdin>".to_owned())
    } else {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        (text, file.display().to_string())
    };
    Ok(ferrule_policy::parse_documents(&text, &origin)?)
}

#[derive(Debug, Serialize)]
struct ApplyReport {
    version: u64,
    applied: Vec<String>,
    changed: Vec<String>,
}

async fn apply(file: &PathBuf, connect: &ConnectArgs, format: Format) -> anyhow::Result<()> {
    let policies = read_policies(file)?;
    let applied: Vec<String> = policies.iter().map(|p| p.key().to_string()).collect();
    let request = v1::ApplyPoliciesRequest {
        policies: policies
            .iter()
            .map(|p| v1::PolicyDocument { json: p.to_json() })
            .collect(),
    };
    let cp = ControlPlane::connect(connect).await?;
    let response = cp
        .call(|mut admin| async move { admin.apply_policies(request).await })
        .await?;
    let report = ApplyReport {
        version: response.version,
        applied,
        changed: response.changed,
    };
    match format {
        Format::Json => output::print_json(&report),
        Format::Table => {
            let mut text = String::new();
            for key in &report.applied {
                let state = match report.changed.contains(key) {
                    true => "configured",
                    false => "unchanged",
                };
                text.push_str(&format!("policy {key} {state}\n"));
            }
            text.push_str(&format!("configuration version {}\n", report.version));
            output::print(&text)
        }
    }
}

async fn stored(connect: &ConnectArgs) -> anyhow::Result<Vec<Policy>> {
    list(&ControlPlane::connect(connect).await?).await
}

async fn list(cp: &ControlPlane) -> anyhow::Result<Vec<Policy>> {
    let response = cp
        .call(|mut admin| async move { admin.list_policies(v1::ListPoliciesRequest {}).await })
        .await?;
    response
        .policies
        .iter()
        .map(|doc| Policy::from_json(&doc.json).context("a stored policy does not parse"))
        .collect()
}

async fn get(name: Option<&str>, connect: &ConnectArgs, format: Format) -> anyhow::Result<()> {
    let mut policies = stored(connect).await?;
    if let Some(name) = name {
        policies.retain(|p| p.key().to_string() == name);
        if policies.is_empty() {
            anyhow::bail!("no policy {name} (list them all with `ferrule policy get`)");
        }
    }
    match format {
        Format::Json => {
            let values: Vec<serde_json::Value> = policies
                .iter()
                .map(|p| serde_json::from_str(&p.to_json()))
                .collect::<Result<_, _>>()?;
            output::print_json(&values)
        }
        Format::Table => {
            if policies.is_empty() {
                eprintln!("no policies: every workload accepts any mesh identity");
                return Ok(());
            }
            let docs: Vec<String> = policies.iter().map(Policy::to_yaml).collect();
            output::print(&docs.join("---\n"))
        }
    }
}

async fn delete(names: Vec<String>, connect: &ConnectArgs, format: Format) -> anyhow::Result<()> {
    let cp = ControlPlane::connect(connect).await?;
    let request = v1::DeletePoliciesRequest { keys: names };
    let response = cp
        .call(|mut admin| async move { admin.delete_policies(request).await })
        .await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "version": response.version,
            "deleted": response.deleted,
        })),
        Format::Table => {
            let mut text: String = response
                .deleted
                .iter()
                .map(|k| format!("policy {k} deleted\n"))
                .collect();
            text.push_str(&format!("configuration version {}\n", response.version));
            output::print(&text)
        }
    }
}
