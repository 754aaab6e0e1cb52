//! The Kubernetes group: can this kubeconfig reach the API server, does its user hold the RBAC
//! the component needs (the installer's own rule table), is `ferrule-cni` chained into the
//! node's CNI configuration, and does this node still carry the agent's startup taint.
//!
//! The API server comes from `kube::Config::infer()` (KUBECONFIG, ~/.kube/config or the pod's
//! service account). Without one the group is skipped, unless `--kubernetes` (or `--only
//! kubernetes`) asks for it: then a missing kubeconfig fails.

mod cni;
mod rbac;
mod taint;

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use ferrule_config::check::Check;
use ferrule_config::kubernetes::ENV_NODE_NAME;
use kube::Client;

use crate::output;

const API: &str = "kubernetes-api";

/// A slow or unreachable API server fails the check instead of hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct KubernetesArgs {
    /// Run the Kubernetes checks even without a kubeconfig found (then they fail); by default
    /// they run only when `kube` finds one (KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long = "kubernetes")]
    required: bool,
    /// Whose RBAC to check: the agent's ClusterRole rules or the control plane's.
    #[arg(long, value_enum, value_name = "COMPONENT", default_value = "agent")]
    component: Component,
    /// The node's CNI configuration directory, where ferrule-cni must be chained.
    #[arg(long, value_name = "DIR", default_value = ferrule_cni::install::DEFAULT_HOST_CONF_DIR)]
    cni_conf_dir: PathBuf,
    /// This node's name as Kubernetes knows it, for the taint check.
    #[arg(long = "node", value_name = "NAME", env = ENV_NODE_NAME)]
    node: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Component {
    Agent,
    ControlPlane,
}

/// The group's checks; none when there is no kubeconfig and `asked` is false.
pub async fn checks(args: &KubernetesArgs, asked: bool) -> Vec<Check> {
    let asked = asked || args.required;
    let (client, server) = match client().await {
        Ok(found) => found,
        Err(_) if !asked => return Vec::new(),
        Err(e) => {
            let unchecked = |name| unchecked(name, "no Kubernetes API server to ask");
            return vec![
                Check::fail(
                    API,
                    format!("no Kubernetes API access: {}", error_text(&*e)),
                    "set KUBECONFIG to the cluster's kubeconfig (or run in a pod with a service \
                     account)",
                ),
                unchecked(rbac::NAME),
                cni::check(&args.cni_conf_dir),
                unchecked(taint::NAME),
            ];
        }
    };
    let reach = match client.apiserver_version().await {
        Ok(info) => Check::ok(
            API,
            format!(
                "{server} answered: Kubernetes {} ({})",
                info.git_version, info.platform
            ),
        ),
        Err(e) => Check::fail(
            API,
            format!("the API server did not answer: {}", error_text(&e)),
            "check the server address and credentials in the kubeconfig (`kubectl version`)",
        ),
    };
    if !reach.is_ok() {
        return vec![
            reach,
            unchecked(rbac::NAME, "the API server did not answer"),
            cni::check(&args.cni_conf_dir),
            unchecked(taint::NAME, "the API server did not answer"),
        ];
    }
    vec![
        reach,
        rbac::check(&client, args.component).await,
        cni::check(&args.cni_conf_dir),
        taint::check(&client, args.node.as_deref()).await,
    ]
}

/// A client from the inferred config, with short timeouts, and the server's URL.
async fn client() -> Result<(Client, String), Box<dyn std::error::Error>> {
    let mut config = kube::Config::infer().await?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    Ok((Client::try_from(config)?, server))
}

fn unchecked(name: &'static str, why: &str) -> Check {
    Check::fail(
        name,
        format!("not checked: {why}"),
        "fix the kubernetes-api check first",
    )
}

/// An error and its causes on one line.
fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut causes = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    output::causes_text(causes)
}
