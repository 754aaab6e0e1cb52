//! The config as written: every field optional until validated, unknown fields rejected.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ferrule_config::{ConfigError, Env, duration, parse_field, required};
use ferrule_identity::TrustDomain;
use serde::Deserialize;

use super::kubernetes::{self, RawKubernetes};
use super::limits::RawLimits;
use super::store::RawStore;
use super::{CaConfig, CertificateConfig, Config, MIN_CERT_TTL, SignerConfig};

pub const ENV_TRUST_DOMAIN: &str = "FERRULE_TRUST_DOMAIN";
pub const ENV_LISTEN: &str = "FERRULE_LISTEN";
pub const ENV_PUBLIC_LISTEN: &str = "FERRULE_PUBLIC_LISTEN";
pub const ENV_METRICS_LISTEN: &str = "FERRULE_METRICS_LISTEN";
/// Loopback only: metrics name nodes and identities, so exposing them is a deliberate choice.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
pub const ENV_DATA_DIR: &str = "FERRULE_DATA_DIR";
pub const ENV_WORKLOAD_TTL: &str = "FERRULE_WORKLOAD_TTL";
pub const ENV_NODE_TTL: &str = "FERRULE_NODE_TTL";

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    trust_domain: Option<String>,
    listen: Option<String>,
    public_listen: Option<String>,
    metrics_listen: Option<String>,
    data_dir: Option<PathBuf>,
    ca: Option<RawCa>,
    #[serde(default)]
    certificates: RawCertificates,
    #[serde(default)]
    server: RawServer,
    max_join_token_ttl: Option<String>,
    #[serde(default, deserialize_with = "kubernetes::present")]
    kubernetes: Option<RawKubernetes>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    store: RawStore,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    chain: PathBuf,
    bundle: PathBuf,
    offline_crls: Option<PathBuf>,
    signer: RawSigner,
}

/// Exactly one backend must be given (`file:` now; `pkcs11:` next).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigner {
    file: Option<RawFileSigner>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSigner {
    key: PathBuf,
}

impl RawSigner {
    fn validate(self) -> Result<SignerConfig, ConfigError> {
        match self.file {
            Some(file) => Ok(SignerConfig::File { key: file.key }),
            None => Err(ConfigError::invalid(
                "ca.signer",
                "name one backend: `file: {key: PATH}`",
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificates {
    workload_ttl: Option<String>,
    node_ttl: Option<String>,
    server_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    ip_addresses: Vec<String>,
}

impl RawConfig {
    pub(super) fn apply_env(&mut self, env: &dyn Env) {
        let set = |slot: &mut Option<String>, name| {
            if let Some(v) = env.get(name) {
                *slot = Some(v);
            }
        };
        set(&mut self.trust_domain, ENV_TRUST_DOMAIN);
        set(&mut self.listen, ENV_LISTEN);
        set(&mut self.public_listen, ENV_PUBLIC_LISTEN);
        set(&mut self.metrics_listen, ENV_METRICS_LISTEN);
        set(&mut self.certificates.workload_ttl, ENV_WORKLOAD_TTL);
        set(&mut self.certificates.node_ttl, ENV_NODE_TTL);
        if let Some(v) = env.get(ENV_DATA_DIR) {
            self.data_dir = Some(v.into());
        }
        kubernetes::apply_env(&mut self.kubernetes, env);
        self.store.apply_env(env);
    }

    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        let trust_domain: TrustDomain = parse_field(
            &required(self.trust_domain, "trust_domain")?,
            "trust_domain",
        )?;
        let listen: SocketAddr = parse_field(&required(self.listen, "listen")?, "listen")?;
        let public_listen = match self.public_listen.as_deref() {
            None | Some("" | "off") => None,
            Some(addr) => Some(parse_field::<SocketAddr>(addr, "public_listen")?),
        };
        let metrics_listen = match self
            .metrics_listen
            .as_deref()
            .unwrap_or(DEFAULT_METRICS_LISTEN)
        {
            "" | "off" => None,
            addr => Some(parse_field::<SocketAddr>(addr, "metrics_listen")?),
        };
        let data_dir = required(self.data_dir, "data_dir")?;
        let ca = required(self.ca, "ca")?;
        let server_ip_addresses = self
            .server
            .ip_addresses
            .iter()
            .map(|ip| parse_field::<IpAddr>(ip, "server.ip_addresses"))
            .collect::<Result<_, _>>()?;
        Ok(Config {
            trust_domain,
            listen,
            public_listen,
            metrics_listen,
            data_dir,
            ca: CaConfig {
                chain: ca.chain,
                bundle: ca.bundle,
                offline_crls: ca.offline_crls,
                signer: ca.signer.validate()?,
            },
            certificates: self.certificates.validate()?,
            server_dns_names: self.server.dns_names,
            server_ip_addresses,
            max_join_token_ttl: duration(
                self.max_join_token_ttl.as_deref(),
                "max_join_token_ttl",
                24 * HOUR,
            )?,
            kubernetes: self.kubernetes.map(RawKubernetes::validate).transpose()?,
            limits: self.limits.validate()?,
            store: self.store.validate()?,
        })
    }
}

impl RawCertificates {
    fn validate(self) -> Result<CertificateConfig, ConfigError> {
        let ttl = |value: Option<String>, field: &str, default| {
            let ttl = duration(value.as_deref(), field, default)?;
            if ttl < MIN_CERT_TTL {
                return Err(ConfigError::invalid(
                    field,
                    format!(
                        "{} is shorter than the minimum of {}",
                        humantime_str(ttl),
                        humantime_str(MIN_CERT_TTL)
                    ),
                ));
            }
            Ok(ttl)
        };
        Ok(CertificateConfig {
            workload_ttl: ttl(self.workload_ttl, "certificates.workload_ttl", 8 * HOUR)?,
            node_ttl: ttl(self.node_ttl, "certificates.node_ttl", 24 * HOUR)?,
            server_ttl: ttl(self.server_ttl, "certificates.server_ttl", 24 * HOUR)?,
        })
    }
}

fn humantime_str(d: Duration) -> String {
    format!("{}s", d.as_secs())
}
