//! The steps of `ferrule-agent uninstall`, in the order that keeps Ferrule from coming back
//! halfway: stop a running agent from enrolling (and its CNI installer from re-chaining), take
//! capture off every pod, unchain and delete the CNI plugin, forget the enrolled pods.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrule_cni::agent::{self, AgentClient};
use ferrule_cni::install::InstallConfig;
use ferrule_config::process::error_chain;

use super::report::Report;
use crate::capture::{self, PinDir, UninstallReport};
use crate::config::{self, CniSettings, Config, Env};

/// A running agent answers at once (it waits only for an enrollment in progress).
const AGENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the node's Ferrule state lives, from the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    pub enroll_socket: PathBuf,
    pub pin_dir: PathBuf,
    pub data_dir: Option<PathBuf>,
    /// Kubernetes mode with the CNI plugin installed by the agent.
    pub cni: Option<CniSettings>,
    pub kubernetes: bool,
}

impl Targets {
    pub fn of(config: &Config) -> Self {
        let kubernetes = config.kubernetes.as_ref();
        Self {
            enroll_socket: config.enroll_socket.clone(),
            pin_dir: config.capture.pin_dir.clone(),
            data_dir: config.data_dir.clone(),
            cni: kubernetes.and_then(|k| k.cni.clone()),
            kubernetes: kubernetes.is_some(),
        }
    }

    /// Without a configuration file: a standalone agent's defaults, with the `FERRULE_*`
    /// overrides the agent would apply. No data_dir is known then.
    pub fn defaults(env: &dyn Env) -> Self {
        let path = |name, default: &str| PathBuf::from(env.get(name).unwrap_or(default.into()));
        Self {
            enroll_socket: path(config::ENV_ENROLL_SOCKET, config::DEFAULT_ENROLL_SOCKET),
            pin_dir: path(config::ENV_PIN_DIR, capture::DEFAULT_PIN_DIR),
            data_dir: env.get(config::ENV_DATA_DIR).map(PathBuf::from),
            cni: None,
            kubernetes: false,
        }
    }
}

/// Runs every step, each whatever the others did, and says what each found and did.
pub async fn run(targets: &Targets) -> Report {
    let mut report = Report::default();
    stop_agent(&targets.enroll_socket, &mut report).await;
    let pin_dir = targets.pin_dir.clone();
    match tokio::task::spawn_blocking(move || capture::uninstall(&pin_dir)).await {
        Ok(result) => capture_lines(&targets.pin_dir, result, &mut report),
        Err(e) => report.failed("capture", format!("removing the pins: {e}")),
    }
    match (&targets.cni, targets.kubernetes) {
        (Some(cni), _) => remove_cni(cni, &mut report),
        (None, true) => report.nothing(
            "cni",
            "kubernetes.cni is off: the CNI configuration is managed elsewhere",
        ),
        (None, false) => report.nothing("cni", "not in Kubernetes mode: no CNI plugin installed"),
    }
    remove_pod_state(targets.data_dir.as_deref(), &mut report);
    report
}

/// A running agent must not enroll (and pin) pods or chain the plugin again behind our back.
async fn stop_agent(socket: &Path, report: &mut Report) {
    let client = AgentClient::new(socket, AGENT_TIMEOUT);
    match client.uninstall().await {
        Ok(reply) if reply.already => report.nothing(
            "agent",
            "the running agent was already told to stop enrolling pods",
        ),
        Ok(reply) => report.done(
            "agent",
            format!(
                "told the running agent to stop enrolling pods; it released {} pod(s)",
                reply.released_pods
            ),
        ),
        // Nothing listens: no agent runs (or it cannot enroll anything anyway).
        Err(e @ agent::Error::Connect { .. }) => {
            report.nothing("agent", format!("no running agent ({e})"))
        }
        Err(e) => report.failed(
            "agent",
            format!("the agent did not confirm it stopped enrolling pods ({e}); stop it"),
        ),
    }
}

fn capture_lines(
    pin_dir: &Path,
    result: Result<UninstallReport, capture::Error>,
    report: &mut Report,
) {
    let dir = pin_dir.display();
    let removed = match result {
        Ok(removed) => removed,
        Err(e) => return report.failed("capture", error_chain(&e)),
    };
    match removed.found {
        PinDir::Missing => return report.nothing("capture", format!("no pin directory {dir}")),
        PinDir::NotBpffs => {
            return report.nothing("capture", format!("{dir} is not on bpffs: nothing pinned"));
        }
        PinDir::Present => {}
    }
    match removed.links_detached {
        0 => report.nothing("capture", "no pod links pinned"),
        n => report.done(
            "capture",
            format!("detached the programs from every pod ({n} links)"),
        ),
    }
    if !removed.links_held_elsewhere.is_empty() {
        report.failed(
            "capture",
            format!(
                "links {:?} are held open by a process: their programs stay attached until it \
                 exits",
                removed.links_held_elsewhere
            ),
        );
    }
    match (removed.pins_removed, removed.pin_dir_removed) {
        (0, false) => report.nothing("pins", format!("nothing pinned under {dir}")),
        (n, true) => report.done("pins", format!("removed {n} pin(s) and {dir}")),
        (n, false) => report.done("pins", format!("removed {n} pin(s) under {dir}")),
    }
}

/// The plugin's entry in the CNI configuration, its binary and its kubeconfig.
fn remove_cni(cni: &CniSettings, report: &mut Report) {
    let config = InstallConfig::new(&cni.plugin, &cni.bin_dir, &cni.conf_dir);
    let had_binary = config.binary_path().exists();
    let had_kubeconfig = config.kubeconfig_path().exists();
    let changed = match ferrule_cni::uninstall(&config) {
        Ok(changed) => changed,
        Err(e) => return report.failed("cni config", error_chain(&e)),
    };
    if changed.is_empty() {
        let dir = cni.conf_dir.display();
        report.nothing(
            "cni config",
            format!("no configuration in {dir} chains ferrule-cni"),
        );
    } else {
        let files: Vec<String> = changed.iter().map(|f| f.display().to_string()).collect();
        report.done(
            "cni config",
            format!("removed ferrule-cni from {}", files.join(", ")),
        );
    }
    for (item, had, path) in [
        ("cni plugin", had_binary, config.binary_path()),
        ("cni kubeconfig", had_kubeconfig, config.kubeconfig_path()),
    ] {
        match had {
            true => report.done(item, format!("deleted {}", path.display())),
            false => report.nothing(item, format!("no {}", path.display())),
        }
    }
}

/// The pods a restarted agent would enroll again.
fn remove_pod_state(data_dir: Option<&Path>, report: &mut Report) {
    let Some(dir) = data_dir else {
        return report.nothing(
            "pod state",
            "no data_dir (from --config): no pod list to remove",
        );
    };
    let file = dir.join(crate::pods::STATE_FILE);
    match std::fs::remove_file(&file) {
        Ok(()) => report.done("pod state", format!("removed {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.nothing("pod state", format!("no {}", file.display()))
        }
        Err(e) => report.failed("pod state", format!("{}: {e}", file.display())),
    }
}
