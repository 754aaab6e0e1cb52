//! Agent configuration: YAML file, then `FERRULE_*` environment overrides, then validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferrule_config::{ConfigError, Env, parse_field, required};
use ferrule_identity::TrustDomain;
use serde::Deserialize;

pub use ferrule_config::{MapEnv, ProcessEnv};

pub const ENV_NODE_NAME: &str = "FERRULE_NODE_NAME";
pub const ENV_CONTROL_PLANE: &str = "FERRULE_CONTROL_PLANE";
pub const ENV_TRUST_DOMAIN: &str = "FERRULE_TRUST_DOMAIN";
pub const ENV_BUNDLE: &str = "FERRULE_BUNDLE";
pub const ENV_DATA_DIR: &str = "FERRULE_DATA_DIR";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The node name the join token must be for (a guard against using another node's token).
    pub node_name: Option<String>,
    pub control_plane: SocketAddr,
    pub trust_domain: TrustDomain,
    /// Trust bundle used to authenticate the control plane before the first push.
    pub bundle: PathBuf,
    /// Where the agent writes public state (its certificate chain). Never keys.
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node_name: Option<String>,
    control_plane: Option<String>,
    trust_domain: Option<String>,
    bundle: Option<PathBuf>,
    data_dir: Option<PathBuf>,
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
        if let Some(v) = env.get(ENV_BUNDLE) {
            raw.bundle = Some(v.into());
        }
        if let Some(v) = env.get(ENV_DATA_DIR) {
            raw.data_dir = Some(v.into());
        }
        raw.validate()
    }
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
            control_plane: parse_field(
                &required(self.control_plane, "control_plane")?,
                "control_plane",
            )?,
            trust_domain: parse_field(
                &required(self.trust_domain, "trust_domain")?,
                "trust_domain",
            )?,
            bundle: required(self.bundle, "bundle")?,
            data_dir: self.data_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_env_combine() {
        let env = MapEnv::from_pairs(&[(ENV_CONTROL_PLANE, "127.0.0.1:9443")]);
        let config = Config::from_yaml(
            "trust_domain: example.org\nbundle: /b.pem\ncontrol_plane: 10.0.0.1:1\n",
            "agent.yaml",
            &env,
        )
        .unwrap();
        assert_eq!(config.control_plane.port(), 9443);
        assert_eq!(config.bundle, PathBuf::from("/b.pem"));
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
                "trust_domain: Example\nbundle: /b\ncontrol_plane: 127.0.0.1:1\n",
                "trust_domain",
            ),
            (
                "trust_domain: e.org\nbundle: /b\ncontrol_plane: 127.0.0.1:1\nnode_name: a/b\n",
                "node_name",
            ),
            ("trust_domain: e.org\nbundel: /b\n", "bundel"),
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
