//! Control-plane configuration: a YAML file, then `FERRULE_*` environment overrides, then
//! validation into typed settings. Every error names the field it is about.

mod kubernetes;
mod limits;
mod raw;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrule_identity::TrustDomain;

pub use ferrule_config::{ConfigError, Env, MapEnv, ProcessEnv};
pub use kubernetes::{
    ENV_KUBERNETES_AGENT_SERVICE_ACCOUNT, ENV_KUBERNETES_AUDIENCE, ENV_KUBERNETES_NAMESPACE,
    KubernetesConfig, dns_label,
};
pub use limits::{ConnectionLimits, HandshakeLogLimits, Http2Limits, LimitsConfig, Rate};
pub use raw::{
    ENV_DATA_DIR, ENV_LISTEN, ENV_METRICS_LISTEN, ENV_NODE_TTL, ENV_PUBLIC_LISTEN,
    ENV_TRUST_DOMAIN, ENV_WORKLOAD_TTL,
};
pub use store::{ENV_ETCD_ENDPOINTS, StoreConfig};

/// The shortest certificate lifetime the control plane will issue: renewal at half-life must
/// leave time for retries.
pub const MIN_CERT_TTL: Duration = Duration::from_secs(60);

/// Where the issuing CA's private key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerConfig {
    /// PKCS#8 PEM file (development; the key is in the control plane's memory).
    File { key: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaConfig {
    /// Issuing CA certificate followed by its intermediates.
    pub chain: PathBuf,
    /// Trust bundle: every root currently accepted.
    pub bundle: PathBuf,
    /// CRLs of the root and intermediate (`ca-crls.pem` from `ferrule ca init` / `ca crl`),
    /// served after the issuing CA's CRL; re-read every minute.
    pub offline_crls: Option<PathBuf>,
    pub signer: SignerConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateConfig {
    pub workload_ttl: Duration,
    pub node_ttl: Duration,
    /// Lifetime of the control plane's own serving certificate (rotated at half-life).
    pub server_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub trust_domain: TrustDomain,
    pub listen: SocketAddr,
    /// HTTPS without client certificates for the CRL and trust bundle (gateways, openssl);
    /// `None` (unset or `off`) serves neither.
    pub public_listen: Option<SocketAddr>,
    /// `GET /metrics` (Prometheus); `None` when `off`.
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub ca: CaConfig,
    pub certificates: CertificateConfig,
    /// Extra SANs on the serving certificate, for clients that check host names.
    pub server_dns_names: Vec<String>,
    pub server_ip_addresses: Vec<IpAddr>,
    /// Longest lifetime an admin may give a join token.
    pub max_join_token_ttl: Duration,
    /// Kubernetes mode when set; standalone (join tokens, agent-registered workloads, policies
    /// applied through the admin API) otherwise.
    pub kubernetes: Option<KubernetesConfig>,
    /// What one client, source address or node may cost (`limits:`).
    pub limits: LimitsConfig,
    /// Where the state lives (`store:`): embedded under `data_dir`, or a shared etcd cluster.
    pub store: StoreConfig,
}

impl Config {
    /// Reads `path`, applies environment overrides from `env`, and validates.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Self, ConfigError> {
        let text = ferrule_config::read(path)?;
        Self::from_yaml(&text, &path.display().to_string(), env)
    }

    pub fn from_yaml(text: &str, origin: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        let mut raw: raw::RawConfig = ferrule_config::parse_yaml(text, origin)?;
        raw.apply_env(env);
        raw.validate()
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("store.redb")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_is_valid() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/control-plane.yaml");
        let config =
            Config::load(&path, &ferrule_config::MapEnv::default()).expect("example config");
        assert_eq!(config.public_listen.map(|a| a.port()), Some(8444));
        assert_eq!(
            config.limits,
            LimitsConfig::default(),
            "the example shows the defaults"
        );
    }

    const GOOD: &str = "
trust_domain: example.org
listen: 127.0.0.1:8443
data_dir: /var/lib/ferrule
ca:
  chain: /ca/chain.pem
  bundle: /ca/bundle.pem
  signer:
    file:
      key: /ca/issuing.key
";

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_yaml(text, "cp.yaml", &MapEnv::from_pairs(env))
    }

    #[test]
    fn defaults_and_env_overrides() {
        let config = load(GOOD, &[]).unwrap();
        assert_eq!(
            config.certificates.workload_ttl,
            Duration::from_secs(8 * 3600)
        );
        assert_eq!(
            config.store_path(),
            PathBuf::from("/var/lib/ferrule/store.redb")
        );
        let config = load(
            GOOD,
            &[(ENV_WORKLOAD_TTL, "10m"), (ENV_LISTEN, "0.0.0.0:9000")],
        )
        .unwrap();
        assert_eq!(config.certificates.workload_ttl, Duration::from_secs(600));
        assert_eq!(config.listen.port(), 9000);
    }

    #[test]
    fn bad_values_name_their_field() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                GOOD,
                &[(ENV_WORKLOAD_TTL, "59s")],
                "certificates.workload_ttl",
            ),
            (
                GOOD,
                &[(ENV_WORKLOAD_TTL, "soon")],
                "certificates.workload_ttl",
            ),
            (GOOD, &[(ENV_TRUST_DOMAIN, "Bad_Domain!")], "trust_domain"),
            (GOOD, &[(ENV_LISTEN, "nowhere")], "listen"),
            ("listen: 1.2.3.4:1\n", &[], "trust_domain"),
            (
                "trust_domain: a\nlisten: 127.0.0.1:1\ndata_dir: /x\nca: {chain: a, bundle: b, signer: {hsm: {}}}\n",
                &[],
                "ca.signer",
            ),
            ("trust_domain: a\nbogus: 1\n", &[], "bogus"),
            (
                &format!("{GOOD}limits:\n  connections: {{max: 10, per_source: 11}}\n"),
                &[],
                "limits.connections.per_source",
            ),
            (
                &format!("{GOOD}limits:\n  per_node:\n    sign: {{burst: 0}}\n"),
                &[],
                "limits.per_node.sign.burst",
            ),
            (
                &format!("{GOOD}limits:\n  http2: {{keepalive_timeout: 0s}}\n"),
                &[],
                "limits.http2.keepalive_timeout",
            ),
        ];
        for (text, env, field) in cases {
            let err = load(text, env).unwrap_err().to_string();
            assert!(
                err.contains(field),
                "expected an error naming {field}, got: {err}"
            );
        }
    }
}
