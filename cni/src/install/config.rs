//! What the installer installs where.

use std::path::PathBuf;

use super::ApiAccess;
use crate::netconf::{DEFAULT_AGENT_SOCKET, DEFAULT_TIMEOUT_SECONDS, PLUGIN_TYPE, PluginConf};

/// The plugin's kubeconfig, in the configuration directory.
pub const KUBECONFIG_NAME: &str = "ferrule-cni.kubeconfig";
/// The configuration directory as the host (the runtime, the plugin) sees it.
pub const DEFAULT_HOST_CONF_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_EXCLUDE_NAMESPACES: &[&str] = &["kube-system", "ferrule-system"];

/// What to install where. Paths in `bin_dir` and `conf_dir` are as this process sees them
/// (`/host/opt/cni/bin` in the agent container); `host_conf_dir` and `agent_socket` are as
/// the host sees them, because they go into the configuration the runtime reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallConfig {
    /// The binary to copy, `/usr/local/bin/ferrule-cni` in the agent image.
    pub plugin_binary: PathBuf,
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub host_conf_dir: PathBuf,
    pub agent_socket: PathBuf,
    pub exclude_namespaces: Vec<String>,
    pub timeout_seconds: u64,
    /// API access for the plugin's fallback; `None` writes no kubeconfig (the plugin then fails
    /// closed for every pod while the agent is down).
    pub api: Option<ApiAccess>,
}

impl InstallConfig {
    /// The defaults of the plan: host paths `/etc/cni/net.d` and `/var/run/ferrule/agent.sock`,
    /// kube-system and ferrule-system excluded, 10 s timeout, no API access.
    pub fn new(
        plugin_binary: impl Into<PathBuf>,
        bin_dir: impl Into<PathBuf>,
        conf_dir: impl Into<PathBuf>,
    ) -> InstallConfig {
        InstallConfig {
            plugin_binary: plugin_binary.into(),
            bin_dir: bin_dir.into(),
            conf_dir: conf_dir.into(),
            host_conf_dir: DEFAULT_HOST_CONF_DIR.into(),
            agent_socket: DEFAULT_AGENT_SOCKET.into(),
            exclude_namespaces: DEFAULT_EXCLUDE_NAMESPACES
                .iter()
                .map(|ns| ns.to_string())
                .collect(),
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            api: None,
        }
    }

    /// The object appended to the primary conflist's `plugins`.
    pub fn plugin_conf(&self) -> PluginConf {
        PluginConf {
            plugin_type: PLUGIN_TYPE.into(),
            agent_socket: self.agent_socket.clone(),
            kubeconfig: self
                .api
                .as_ref()
                .map(|_| self.host_conf_dir.join(KUBECONFIG_NAME)),
            exclude_namespaces: self.exclude_namespaces.clone(),
            timeout_seconds: self.timeout_seconds,
            converted_from: None,
        }
    }

    pub fn binary_path(&self) -> PathBuf {
        self.bin_dir.join(PLUGIN_TYPE)
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.conf_dir.join(KUBECONFIG_NAME)
    }
}
