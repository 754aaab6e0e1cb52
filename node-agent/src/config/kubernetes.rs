//! The `kubernetes:` section: present means Kubernetes mode.

use std::net::SocketAddr;
use std::path::PathBuf;

use ferrule_config::{ConfigError, Env, parse_field};
use serde::Deserialize;

use crate::enroll::Mode;

pub const ENV_DEFAULT_MODE: &str = "FERRULE_KUBERNETES_DEFAULT_MODE";
pub const ENV_CGROUP_ROOT: &str = "FERRULE_KUBERNETES_CGROUP_ROOT";
pub const ENV_PROC_ROOT: &str = "FERRULE_KUBERNETES_PROC_ROOT";
pub const ENV_TOKEN_PATH: &str = "FERRULE_KUBERNETES_TOKEN_PATH";
pub const ENV_READINESS_LISTEN: &str = "FERRULE_KUBERNETES_READINESS_LISTEN";

const DEFAULT_CGROUP_ROOT: &str = "/host/sys/fs/cgroup";
const DEFAULT_PROC_ROOT: &str = "/host/proc";
const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/ferrule/token";
const DEFAULT_READINESS_LISTEN: &str = "0.0.0.0:15022";
const DEFAULT_CNI_BIN_DIR: &str = "/host/opt/cni/bin";
const DEFAULT_CNI_CONF_DIR: &str = "/host/etc/cni/net.d";
const DEFAULT_CNI_HOST_CONF_DIR: &str = "/etc/cni/net.d";
const DEFAULT_CNI_PLUGIN: &str = "/usr/local/bin/ferrule-cni";
const DEFAULT_CNI_SOCKET: &str = "/var/run/ferrule/agent.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// The mode of pods in namespaces labelled `ferrule.io/mode=enabled`.
    pub default_mode: Mode,
    /// The host's cgroup v2 root; kubelet's `kubepods` tree is below it.
    pub cgroup_root: PathBuf,
    /// The host's /proc, to find the pods that already run when the agent starts.
    pub proc_root: PathBuf,
    /// The projected ServiceAccount token (audience `ferrule`) the node attests with.
    pub token_path: PathBuf,
    /// `GET /ready` for the kubelet's readiness probe; `None` when `off`.
    pub readiness_listen: Option<SocketAddr>,
    /// Where the CNI plugin is installed; `None` when `cni: off` (a test harness that runs the
    /// chain itself, or a cluster whose CNI configuration is managed elsewhere).
    pub cni: Option<CniSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniSettings {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    /// `conf_dir` as the host (the container runtime running the plugin) sees it.
    pub host_conf_dir: PathBuf,
    /// The plugin binary shipped with the agent, copied into `bin_dir`.
    pub plugin: PathBuf,
    /// The enrollment socket as the host (the container runtime running the plugin) sees it.
    pub socket: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetes {
    default_mode: Option<String>,
    cgroup_root: Option<PathBuf>,
    proc_root: Option<PathBuf>,
    token_path: Option<PathBuf>,
    readiness_listen: Option<String>,
    cni: Option<RawCni>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCni {
    /// `cni: off`
    Switch(String),
    Settings(RawCniSettings),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCniSettings {
    bin_dir: Option<PathBuf>,
    conf_dir: Option<PathBuf>,
    host_conf_dir: Option<PathBuf>,
    plugin: Option<PathBuf>,
    socket: Option<PathBuf>,
}

/// `FERRULE_KUBERNETES_*` variables; any of them switches Kubernetes mode on.
pub(super) fn env_overrides(raw: &mut Option<RawKubernetes>, env: &dyn Env) {
    let vars = [
        ENV_DEFAULT_MODE,
        ENV_CGROUP_ROOT,
        ENV_PROC_ROOT,
        ENV_TOKEN_PATH,
        ENV_READINESS_LISTEN,
    ];
    if vars.iter().all(|v| env.get(v).is_none()) {
        return;
    }
    let raw = raw.get_or_insert_with(RawKubernetes::default);
    if let Some(v) = env.get(ENV_DEFAULT_MODE) {
        raw.default_mode = Some(v);
    }
    if let Some(v) = env.get(ENV_CGROUP_ROOT) {
        raw.cgroup_root = Some(v.into());
    }
    if let Some(v) = env.get(ENV_PROC_ROOT) {
        raw.proc_root = Some(v.into());
    }
    if let Some(v) = env.get(ENV_TOKEN_PATH) {
        raw.token_path = Some(v.into());
    }
    if let Some(v) = env.get(ENV_READINESS_LISTEN) {
        raw.readiness_listen = Some(v);
    }
}

impl RawKubernetes {
    pub(super) fn validate(self) -> Result<KubernetesSettings, ConfigError> {
        let default_mode = match self.default_mode.as_deref().unwrap_or("strict") {
            "strict" => Mode::Strict,
            "permissive" => Mode::Permissive,
            other => {
                return Err(ConfigError::invalid(
                    "kubernetes.default_mode",
                    format!("{other:?}: use strict or permissive"),
                ));
            }
        };
        let readiness_listen = match self
            .readiness_listen
            .as_deref()
            .unwrap_or(DEFAULT_READINESS_LISTEN)
        {
            "off" | "" => None,
            addr => Some(parse_field(addr, "kubernetes.readiness_listen")?),
        };
        Ok(KubernetesSettings {
            default_mode,
            cgroup_root: absolute(self.cgroup_root, DEFAULT_CGROUP_ROOT, "cgroup_root")?,
            proc_root: absolute(self.proc_root, DEFAULT_PROC_ROOT, "proc_root")?,
            token_path: absolute(self.token_path, DEFAULT_TOKEN_PATH, "token_path")?,
            readiness_listen,
            cni: cni_settings(self.cni)?,
        })
    }
}

fn cni_settings(raw: Option<RawCni>) -> Result<Option<CniSettings>, ConfigError> {
    let raw = match raw {
        Some(RawCni::Switch(s)) if s == "off" => return Ok(None),
        Some(RawCni::Switch(s)) => {
            return Err(ConfigError::invalid(
                "kubernetes.cni",
                format!("{s:?}: `off` or a map of bin_dir, conf_dir, plugin, socket"),
            ));
        }
        Some(RawCni::Settings(settings)) => settings,
        None => RawCniSettings::default(),
    };
    Ok(Some(CniSettings {
        bin_dir: absolute(raw.bin_dir, DEFAULT_CNI_BIN_DIR, "cni.bin_dir")?,
        conf_dir: absolute(raw.conf_dir, DEFAULT_CNI_CONF_DIR, "cni.conf_dir")?,
        host_conf_dir: absolute(
            raw.host_conf_dir,
            DEFAULT_CNI_HOST_CONF_DIR,
            "cni.host_conf_dir",
        )?,
        plugin: absolute(raw.plugin, DEFAULT_CNI_PLUGIN, "cni.plugin")?,
        socket: absolute(raw.socket, DEFAULT_CNI_SOCKET, "cni.socket")?,
    }))
}

fn absolute(value: Option<PathBuf>, default: &str, field: &str) -> Result<PathBuf, ConfigError> {
    let path = value.unwrap_or_else(|| default.into());
    if !path.is_absolute() {
        return Err(ConfigError::invalid(
            &format!("kubernetes.{field}"),
            format!("{}: must be an absolute path", path.display()),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, MapEnv};

    const BASE: &str = "trust_domain: e.org\nbundle: /b\ncontrol_plane: ferrule-control-plane.ferrule-system.svc:8443\n";

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_yaml(
            &format!("{BASE}{extra}"),
            "agent.yaml",
            &MapEnv::from_pairs(env),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_section_switches_kubernetes_mode_on_with_the_defaults() {
        let k = load("kubernetes: {}\n", &[]).unwrap().kubernetes.unwrap();
        assert_eq!(k.default_mode, crate::enroll::Mode::Strict);
        assert_eq!(k.cgroup_root.to_str(), Some("/host/sys/fs/cgroup"));
        assert_eq!(k.readiness_listen.unwrap().port(), 15022);
        let cni = k.cni.unwrap();
        assert_eq!(cni.conf_dir.to_str(), Some("/host/etc/cni/net.d"));
        assert_eq!(cni.socket.to_str(), Some("/var/run/ferrule/agent.sock"));
        assert!(load("", &[]).unwrap().kubernetes.is_none());
    }

    #[test]
    fn fields_and_environment_override_the_defaults() {
        let k = load(
            "kubernetes: {default_mode: permissive, cni: off, readiness_listen: off}\n",
            &[("FERRULE_KUBERNETES_PROC_ROOT", "/proc")],
        )
        .unwrap()
        .kubernetes
        .unwrap();
        assert_eq!(k.default_mode, crate::enroll::Mode::Permissive);
        assert!(k.cni.is_none() && k.readiness_listen.is_none());
        assert_eq!(k.proc_root.to_str(), Some("/proc"));
        let from_env = load("", &[("FERRULE_KUBERNETES_CGROUP_ROOT", "/sys/fs/cgroup")]).unwrap();
        assert!(
            from_env.kubernetes.is_some(),
            "any FERRULE_KUBERNETES_* switches it on"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        for (extra, field) in [
            (
                "kubernetes: {default_mode: loose}\n",
                "kubernetes.default_mode",
            ),
            ("kubernetes: {proc_root: proc}\n", "kubernetes.proc_root"),
            ("kubernetes: {cni: maybe}\n", "kubernetes.cni"),
            (
                "kubernetes: {cni: {conf_dir: etc}}\n",
                "kubernetes.cni.conf_dir",
            ),
            (
                "kubernetes: {readiness_listen: nowhere}\n",
                "kubernetes.readiness_listen",
            ),
            ("kubernetes: {cgroups: /x}\n", "cgroups"),
        ] {
            let err = load(extra, &[]).unwrap_err();
            assert!(
                err.contains(field),
                "{extra:?}: expected {field} in {err:?}"
            );
        }
    }
}
