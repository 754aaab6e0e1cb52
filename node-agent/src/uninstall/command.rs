//! `ferrule-agent uninstall [--config FILE] [--if-removed]`: what the binary runs for the
//! subcommand. Exits 0 when done (or nothing was left, or `--if-removed` found an upgrade), 1
//! when something could not be removed or decided, 2 on a bad configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use ferrule_config::kubernetes::{ENV_DAEMONSET, ENV_POD_NAMESPACE};

use super::if_removed::{self, Decision};
use super::steps::{self, Targets};
use crate::config::{Config, Env, ProcessEnv};

/// Take Ferrule off this node; pods stay up as plain pods
///
/// Stops a running agent from enrolling pods, detaches every program from the pods and removes
/// the pins, unchains and deletes the CNI plugin (Kubernetes mode) and forgets the enrolled
/// pods, printing one line per item. Running it again is harmless.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's configuration file (FERRULE_* variables override it, as for the agent).
    /// Without one: a standalone agent's default paths, and no pod state file is known.
    #[arg(long, env = "FERRULE_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Only if Ferrule is being removed from the cluster: the agent's DaemonSet
    /// (FERRULE_DAEMONSET in FERRULE_POD_NAMESPACE) is gone or being deleted. The manifests'
    /// preStop hook runs this, so an upgrade or a restart leaves everything in place.
    #[arg(long)]
    if_removed: bool,
}

pub async fn main(args: Args) -> ExitCode {
    let targets = match &args.config {
        Some(path) => match Config::load(path, &ProcessEnv) {
            Ok(config) => Targets::of(&config),
            Err(e) => return usage_error(&e.to_string()),
        },
        None => Targets::defaults(&ProcessEnv),
    };
    if args.if_removed {
        match removal(&ProcessEnv).await {
            Ok(Decision::Removed(why)) => println!("removal: {why}"),
            Ok(Decision::Stays(why)) => {
                println!("{why}; nothing uninstalled");
                return ExitCode::SUCCESS;
            }
            Ok(Decision::Undecided(why)) => {
                eprintln!("ferrule-agent uninstall: {why}; leaving Ferrule in place");
                return ExitCode::FAILURE;
            }
            Err(message) => return usage_error(&message),
        }
    }
    let report = steps::run(&targets).await;
    print!("{report}");
    match report.failed_any() {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    }
}

/// Asks the API whether the agent's DaemonSet is going away; `Err` names a missing variable.
async fn removal(env: &dyn Env) -> Result<Decision, String> {
    let var = |name: &str| {
        env.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            format!("--if-removed needs {name} (the manifests set it for the agent's pod)")
        })
    };
    let (name, namespace) = (var(ENV_DAEMONSET)?, var(ENV_POD_NAMESPACE)?);
    let client = match kube::Config::infer().await {
        Ok(config) => kube::Client::try_from(config).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    Ok(match client {
        Ok(client) => if_removed::decide(&client, &namespace, &name, if_removed::RETRY_FOR).await,
        Err(e) => Decision::Undecided(format!("no Kubernetes API client: {e}")),
    })
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("ferrule-agent uninstall: {message}");
    ExitCode::from(2)
}
