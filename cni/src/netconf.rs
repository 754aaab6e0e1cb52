//! The network configuration on stdin: the ferrule-cni plugin object from the conflist, with
//! what the runtime injects (`cniVersion`, `name`, `prevResult`, GC's valid attachments).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::version;

/// `type` of our plugin object, and the binary's name in the CNI bin dir.
pub const PLUGIN_TYPE: &str = "ferrule-cni";
pub const DEFAULT_AGENT_SOCKET: &str = "/var/run/ferrule/agent.sock";
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;

/// Our object in the conflist's `plugins`, exactly as the installer writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginConf {
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The agent's enrollment socket, as the host sees it.
    #[serde(default = "default_agent_socket")]
    pub agent_socket: PathBuf,
    /// Credentials to ask the API server whether a pod must be meshed when the agent is down;
    /// without it the plugin tries `KUBECONFIG` and the in-cluster environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// Pods in these namespaces pass through without asking anyone.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// Budget for the agent call, and again for the API fallback.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Set by the installer when it turned a single-plugin `.conf` of this name into the
    /// conflist, so that uninstalling can put it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<String>,
}

fn default_agent_socket() -> PathBuf {
    DEFAULT_AGENT_SOCKET.into()
}

fn default_timeout_seconds() -> u64 {
    DEFAULT_TIMEOUT_SECONDS
}

impl PluginConf {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

/// One attachment the runtime still uses (GC keeps these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The whole stdin of ADD, DEL, CHECK, STATUS and GC.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(flatten)]
    pub plugin: PluginConf,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<serde_json::Value>,
    /// GC only; absent is not the same as empty (which would mean "none is valid").
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network configuration on stdin is not valid: {0}")]
    Decode(#[from] serde_json::Error),
    #[error(
        "cniVersion {0:?} is not supported (supported: {supported})",
        supported = version::SUPPORTED.join(", ")
    )]
    UnsupportedVersion(String),
    #[error("network configuration: {0}")]
    Invalid(&'static str),
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, Error> {
        let conf: NetConf = serde_json::from_slice(stdin)?;
        if !version::is_supported(&conf.cni_version) {
            return Err(Error::UnsupportedVersion(conf.cni_version));
        }
        if conf.plugin.timeout_seconds == 0 {
            return Err(Error::Invalid("timeout_seconds must be at least 1"));
        }
        Ok(conf)
    }
}

/// The `cniVersion` of whatever came on stdin, for VERSION and for error replies when the
/// configuration does not parse.
pub fn requested_version(stdin: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Versioned {
        #[serde(rename = "cniVersion")]
        cni_version: String,
    }
    serde_json::from_slice::<Versioned>(stdin)
        .ok()
        .map(|v| v.cni_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_fields_and_what_the_runtime_injects() {
        let stdin = br#"{
            "cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "ferrule-cni",
            "agent_socket": "/run/f.sock", "kubeconfig": "/etc/cni/net.d/ferrule-cni.kubeconfig",
            "exclude_namespaces": ["kube-system"], "timeout_seconds": 3,
            "runtimeConfig": {"portMappings": []}, "somethingNew": 1,
            "prevResult": {"cniVersion": "1.1.0", "ips": []},
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]
        }"#;
        let conf = NetConf::parse(stdin).unwrap();
        assert_eq!(conf.cni_version, "1.1.0");
        assert_eq!(conf.plugin.agent_socket, PathBuf::from("/run/f.sock"));
        assert_eq!(
            conf.plugin.kubeconfig.as_deref(),
            Some("/etc/cni/net.d/ferrule-cni.kubeconfig".as_ref())
        );
        assert_eq!(conf.plugin.exclude_namespaces, ["kube-system"]);
        assert_eq!(conf.plugin.timeout(), Duration::from_secs(3));
        assert!(conf.prev_result.is_some());
        assert_eq!(
            conf.valid_attachments,
            Some(vec![Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }])
        );
    }

    #[test]
    fn defaults_apply_to_a_bare_object() {
        let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","type":"ferrule-cni"}"#).unwrap();
        assert_eq!(
            conf.plugin.agent_socket,
            PathBuf::from(DEFAULT_AGENT_SOCKET)
        );
        assert_eq!(conf.plugin.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
        assert!(conf.plugin.exclude_namespaces.is_empty());
        assert_eq!(conf.prev_result, None);
    }

    #[test]
    fn rejects_unsupported_versions_and_zero_timeouts() {
        let err = NetConf::parse(br#"{"cniVersion":"0.2.0","type":"ferrule-cni"}"#).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedVersion(ref v) if v == "0.2.0"),
            "{err}"
        );
        let err =
            NetConf::parse(br#"{"cniVersion":"1.0.0","type":"ferrule-cni","timeout_seconds":0}"#)
                .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(matches!(NetConf::parse(b"{"), Err(Error::Decode(_))));
    }

    #[test]
    fn requested_version_reads_any_object() {
        assert_eq!(
            requested_version(br#"{"cniVersion":"0.4.0"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(requested_version(b""), None);
    }
}
