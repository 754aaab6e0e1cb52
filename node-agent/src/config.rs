//! Agent configuration: YAML file, then `FERRULE_*` environment overrides, then validation.

mod kubernetes;
mod limits;

pub use kubernetes::{CniSettings, KubernetesSettings};
pub use limits::{Http2Limits, Limits, PEER_RESET_WINDOW};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferrule_config::{ConfigError, parse_field, required};
use ferrule_identity::TrustDomain;
use serde::Deserialize;

pub use ferrule_config::{Env, MapEnv, ProcessEnv};

pub use ferrule_config::kubernetes::ENV_NODE_NAME;
pub const ENV_CONTROL_PLANE: &str = "FERRULE_CONTROL_PLANE";
pub const ENV_TRUST_DOMAIN: &str = "FERRULE_TRUST_DOMAIN";
pub const ENV_BUNDLE: &str = "FERRULE_BUNDLE";
pub const ENV_DATA_DIR: &str = "FERRULE_DATA_DIR";
pub const ENV_ENROLL_SOCKET: &str = "FERRULE_ENROLL_SOCKET";
pub use ferrule_node_checks::ENV_PIN_DIR;
pub const ENV_NON_MESH: &str = "FERRULE_NON_MESH";
pub const ENV_METRICS_LISTEN: &str = "FERRULE_METRICS_LISTEN";
pub const ENV_ACCESS_LOG: &str = "FERRULE_ACCESS_LOG";
pub const ENV_DRAIN_TIMEOUT: &str = "FERRULE_DRAIN_TIMEOUT";
/// Loads the eBPF programs as this version instead of the built-in one: upgrade drills and the
/// lifecycle tests ("the same code with a bumped eBPF version").
pub const ENV_PROGRAM_VERSION: &str = "FERRULE_EBPF_PROGRAM_VERSION";

/// How long an agent that handed over (or was stopped) keeps serving established connections.
const DEFAULT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub const DEFAULT_ENROLL_SOCKET: &str = "/run/ferrule/agent.sock";
use ferrule_node_checks::DEFAULT_PIN_DIR;
/// Loopback only: metrics name identities, so exposing them is a deliberate choice.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:15020";

/// What the outbound proxy does with a destination that is not in the workload directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonMesh {
    /// Connect to it directly, in plaintext, from the pod's network namespace.
    #[default]
    Passthrough,
    /// Refuse the connection.
    Deny,
}

/// Which connections the eBPF capture leaves alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureSettings {
    /// bpffs directory where programs, maps and links are pinned so they outlive the agent.
    pub pin_dir: PathBuf,
    pub excluded_ports: Vec<u16>,
    pub excluded_cidrs: Vec<(std::net::IpAddr, u8)>,
    /// The eBPF program version to load; the built-in one unless overridden for a drill.
    pub program_version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The node name the join token must be for (a guard against using another node's token).
    pub node_name: Option<String>,
    /// `ip:port` or `host:port` (e.g. a Kubernetes Service name), resolved on every connect; or
    /// several control-plane replicas separated by commas, tried in turn when one does not answer.
    pub control_plane: String,
    pub trust_domain: TrustDomain,
    /// Trust bundle used to authenticate the control plane before the first push.
    pub bundle: PathBuf,
    /// Where the agent writes public state (its certificate chain). Never keys.
    pub data_dir: Option<PathBuf>,
    /// Unix socket of the enrollment API (CNI plugin, harness).
    pub enroll_socket: PathBuf,
    pub capture: CaptureSettings,
    pub non_mesh: NonMesh,
    /// `GET /metrics` (Prometheus); `None` when set to `off`.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the per-connection JSON access log goes: `stdout`, `off`, or a file path.
    pub access_log: String,
    /// Kubernetes mode: pods come from the API and the CNI plugin, the node attests with its
    /// ServiceAccount token. `None`: standalone (join tokens, enrollment API).
    pub kubernetes: Option<KubernetesSettings>,
    /// After handing over to a new agent (or a stop), established connections run on for at
    /// most this long; then they are closed with close reason `drain`.
    pub drain_timeout: std::time::Duration,
    /// What one client may take from the agent's listeners.
    pub limits: Limits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node_name: Option<String>,
    control_plane: Option<String>,
    trust_domain: Option<String>,
    bundle: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    enroll_socket: Option<PathBuf>,
    #[serde(default)]
    capture: RawCapture,
    #[serde(default)]
    non_mesh: NonMesh,
    metrics_listen: Option<String>,
    access_log: Option<String>,
    kubernetes: Option<kubernetes::RawKubernetes>,
    drain_timeout: Option<String>,
    #[serde(default)]
    limits: limits::RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    pin_dir: Option<PathBuf>,
    #[serde(default)]
    excluded_ports: Vec<u16>,
    #[serde(default)]
    excluded_cidrs: Vec<String>,
    program_version: Option<u32>,
}

/// `10.0.0.0/8` or a bare address (a /32 or /128).
fn parse_cidr(text: &str) -> Result<(std::net::IpAddr, u8), ConfigError> {
    let field = "capture.excluded_cidrs";
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (text, None),
    };
    let ip: std::net::IpAddr = parse_field(ip, field)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(len) => parse_field::<u8>(len, field)?,
        None => max,
    };
    if len > max {
        return Err(ConfigError::invalid(
            field,
            format!("{text:?}: prefix longer than {max}"),
        ));
    }
    Ok((ip, len))
}

impl Config {
    pub fn load(path: &Path, env: &dyn Env) -> Result<Self, ConfigError> {
        let text = ferrule_config::read(path)?;
        Self::from_yaml(&text, &path.display().to_string(), env)
    }

    pub fn from_yaml(text: &str, origin: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        let mut raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            ferrule_config::parse_yaml(text, origin)?
        };
        let over = |slot: &mut Option<String>, name| {
            if let Some(v) = env.get(name) {
                *slot = Some(v);
            }
        };
        over(&mut raw.node_name, ENV_NODE_NAME);
        over(&mut raw.control_plane, ENV_CONTROL_PLANE);
        over(&mut raw.trust_domain, ENV_TRUST_DOMAIN);
        over(&mut raw.metrics_listen, ENV_METRICS_LISTEN);
        over(&mut raw.access_log, ENV_ACCESS_LOG);
        over(&mut raw.drain_timeout, ENV_DRAIN_TIMEOUT);
        if let Some(v) = env.get(ENV_PROGRAM_VERSION) {
            raw.capture.program_version = Some(parse_field(&v, "capture.program_version")?);
        }
        kubernetes::env_overrides(&mut raw.kubernetes, env);
        raw.limits.env_overrides(env)?;
        if let Some(v) = env.get(ENV_BUNDLE) {
            raw.bundle = Some(v.into());
        }
        if let Some(v) = env.get(ENV_DATA_DIR) {
            raw.data_dir = Some(v.into());
        }
        if let Some(v) = env.get(ENV_ENROLL_SOCKET) {
            raw.enroll_socket = Some(v.into());
        }
        if let Some(v) = env.get(ENV_PIN_DIR) {
            raw.capture.pin_dir = Some(v.into());
        }
        if let Some(v) = env.get(ENV_NON_MESH) {
            raw.non_mesh = match v.as_str() {
                "passthrough" => NonMesh::Passthrough,
                "deny" => NonMesh::Deny,
                other => {
                    return Err(ConfigError::invalid(
                        "non_mesh",
                        format!("{other:?} (from {ENV_NON_MESH}): use passthrough or deny"),
                    ));
                }
            };
        }
        raw.validate()
    }
}

/// One control-plane address, or several replicas separated by commas.
fn replicas(text: &str) -> Result<String, ConfigError> {
    let addrs: Vec<String> = text
        .split(',')
        .map(|addr| host_port(addr.trim()))
        .collect::<Result<_, _>>()?;
    Ok(addrs.join(","))
}

/// `ip:port`, `[v6]:port` or `host:port` with a DNS host name.
fn host_port(text: &str) -> Result<String, ConfigError> {
    let field = "control_plane";
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(text.to_owned());
    }
    let bad = || ConfigError::invalid(field, format!("{text:?}: expected host:port"));
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let dns_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(dns_label) || port.parse::<u16>().ok() == Some(0) {
        return Err(bad());
    }
    parse_field::<u16>(port, field)?;
    Ok(text.to_owned())
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        if let Some(name) = &self.node_name {
            let td = TrustDomain::new("example.org").expect("constant");
            ferrule_identity::SpiffeId::node(&td, name)
                .map_err(|e| ConfigError::invalid("node_name", e))?;
        }
        Ok(Config {
            node_name: self.node_name,
            control_plane: replicas(&required(self.control_plane, "control_plane")?)?,
            trust_domain: parse_field(
                &required(self.trust_domain, "trust_domain")?,
                "trust_domain",
            )?,
            bundle: required(self.bundle, "bundle")?,
            data_dir: self.data_dir,
            enroll_socket: self
                .enroll_socket
                .unwrap_or_else(|| DEFAULT_ENROLL_SOCKET.into()),
            capture: CaptureSettings {
                pin_dir: self
                    .capture
                    .pin_dir
                    .unwrap_or_else(|| DEFAULT_PIN_DIR.into()),
                excluded_ports: self.capture.excluded_ports,
                excluded_cidrs: self
                    .capture
                    .excluded_cidrs
                    .iter()
                    .map(|c| parse_cidr(c))
                    .collect::<Result<_, _>>()?,
                program_version: self
                    .capture
                    .program_version
                    .unwrap_or(ferrule_ebpf_common::PROGRAM_VERSION),
            },
            non_mesh: self.non_mesh,
            metrics_listen: match self
                .metrics_listen
                .as_deref()
                .unwrap_or(DEFAULT_METRICS_LISTEN)
            {
                "off" | "" => None,
                addr => Some(parse_field(addr, "metrics_listen")?),
            },
            access_log: self.access_log.unwrap_or_else(|| "stdout".into()),
            kubernetes: self.kubernetes.map(|k| k.validate()).transpose()?,
            drain_timeout: ferrule_config::duration(
                self.drain_timeout.as_deref(),
                "drain_timeout",
                DEFAULT_DRAIN_TIMEOUT,
            )?,
            limits: self.limits.validate()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/agent.yaml");
        Config::load(&path, &MapEnv::default()).expect("example config");
    }

    #[test]
    fn file_and_env_combine() {
        let env = MapEnv::from_pairs(&[(ENV_CONTROL_PLANE, "127.0.0.1:9443")]);
        let config = Config::from_yaml(
            "trust_domain: example.org\nbundle: /b.pem\ncontrol_plane: 10.0.0.1:1\n",
            "agent.yaml",
            &env,
        )
        .unwrap();
        assert!(config.control_plane.ends_with(":9443"));
        assert_eq!(config.bundle, PathBuf::from("/b.pem"));
        assert_eq!(config.non_mesh, NonMesh::Passthrough);
        assert_eq!(config.capture.pin_dir, PathBuf::from(DEFAULT_PIN_DIR));
        let with_capture = Config::from_yaml(
            "trust_domain: e.org\nbundle: /b\ncontrol_plane: 127.0.0.1:1\nnon_mesh: deny\ncapture: {excluded_ports: [22], excluded_cidrs: [10.0.0.0/8, '::1']}\n",
            "agent.yaml",
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(with_capture.non_mesh, NonMesh::Deny);
        assert_eq!(with_capture.capture.excluded_ports, vec![22]);
        assert_eq!(with_capture.capture.excluded_cidrs[0].1, 8);
        assert_eq!(with_capture.capture.excluded_cidrs[1].1, 128);
        let replicas = Config::from_yaml(
            "trust_domain: e.org\nbundle: /b\ncontrol_plane: '127.0.0.1:1, cp-1.ferrule:9443'\n",
            "agent.yaml",
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(replicas.control_plane, "127.0.0.1:1,cp-1.ferrule:9443");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("trust_domain: example.org\nbundle: /b\n", "control_plane"),
            (
                "trust_domain: example.org\nbundle: /b\ncontrol_plane: here\n",
                "control_plane",
            ),
            (
                "trust_domain: example.org\nbundle: /b\ncontrol_plane: '127.0.0.1:1,,'\n",
                "control_plane",
            ),
            (
                "trust_domain: Example\nbundle: /b\ncontrol_plane: 127.0.0.1:1\n",
                "trust_domain",
            ),
            (
                "trust_domain: e.org\nbundle: /b\ncontrol_plane: 127.0.0.1:1\nnode_name: a/b\n",
                "node_name",
            ),
            ("trust_domain: e.org\nbundel: /b\n", "bundel"),
            (
                "trust_domain: e.org\nbundle: /b\ncontrol_plane: 127.0.0.1:1\ncapture: {excluded_cidrs: [10.0.0.0/33]}\n",
                "capture.excluded_cidrs",
            ),
            (
                "trust_domain: e.org\nbundle: /b\ncontrol_plane: 127.0.0.1:1\ncapture: {excluded_ports: [70000]}\n",
                "capture.excluded_ports",
            ),
            (
                "trust_domain: e.org\nbundle: /b\ncontrol_plane: 127.0.0.1:1\nnon_mesh: maybe\n",
                "non_mesh",
            ),
            (
                "trust_domain: e.org\nbundle: /b\ncontrol_plane: 127.0.0.1:1\ndrain_timeout: soon\n",
                "drain_timeout",
            ),
        ];
        for (text, field) in cases {
            let err = Config::from_yaml(text, "agent.yaml", &MapEnv::default()).unwrap_err();
            assert!(
                err.to_string().contains(field),
                "expected {field} in: {err}"
            );
        }
    }
}
