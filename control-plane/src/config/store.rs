//! The `store:` section: where the control plane keeps its state. Absent (or `embedded`), one
//! redb file under `data_dir`; `etcd:` makes it one of any number of replicas sharing an etcd
//! cluster.

use std::path::PathBuf;

use ferrule_config::{ConfigError, Env, duration};
use serde::Deserialize;

use crate::store::etcd::{DEFAULT_PREFIX, DEFAULT_REQUEST_TIMEOUT};
use crate::store::{EtcdOptions, EtcdTls};

/// Comma-separated etcd endpoints; switches to the etcd store.
pub const ENV_ETCD_ENDPOINTS: &str = "FERRULE_ETCD_ENDPOINTS";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreConfig {
    /// `<data_dir>/store.redb`, owned by this process.
    #[default]
    Embedded,
    Etcd(EtcdOptions),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    etcd: Option<RawEtcd>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    #[serde(default)]
    endpoints: Vec<String>,
    prefix: Option<String>,
    tls: Option<RawEtcdTls>,
    request_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcdTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl RawStore {
    pub(super) fn apply_env(&mut self, env: &dyn Env) {
        if let Some(endpoints) = env.get(ENV_ETCD_ENDPOINTS) {
            let etcd = self.etcd.get_or_insert_default();
            etcd.endpoints = endpoints
                .split(',')
                .map(str::trim)
                .map(str::to_owned)
                .collect();
        }
    }

    pub(super) fn validate(self) -> Result<StoreConfig, ConfigError> {
        let Some(etcd) = self.etcd else {
            return Ok(StoreConfig::Embedded);
        };
        if etcd.endpoints.is_empty() {
            return Err(ConfigError::invalid(
                "store.etcd.endpoints",
                "name at least one member, e.g. [https://etcd-0:2379]",
            ));
        }
        if let Some(bad) = etcd
            .endpoints
            .iter()
            .find(|e| !(e.starts_with("https://") || e.starts_with("http://")))
        {
            return Err(ConfigError::invalid(
                "store.etcd.endpoints",
                format!("{bad:?} is not an http:// or https:// URL"),
            ));
        }
        let tls = etcd.tls.map(|t| EtcdTls {
            ca: t.ca,
            cert: t.cert,
            key: t.key,
        });
        let plaintext_remote = tls.is_none()
            && etcd
                .endpoints
                .iter()
                .any(|e| !e.starts_with("http://127.") && !e.starts_with("http://[::1]"));
        if plaintext_remote {
            return Err(ConfigError::invalid(
                "store.etcd.tls",
                "etcd holds the CA's inventory and the mesh's policy: give `tls: {ca, cert, key}` \
                 for any member not on loopback",
            ));
        }
        Ok(StoreConfig::Etcd(EtcdOptions {
            endpoints: etcd.endpoints,
            prefix: etcd.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
            tls,
            request_timeout: duration(
                etcd.request_timeout.as_deref(),
                "store.etcd.request_timeout",
                DEFAULT_REQUEST_TIMEOUT,
            )?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<StoreConfig, ConfigError> {
        ferrule_config::parse_yaml::<RawStore>(yaml, "test")?.validate()
    }

    #[test]
    fn no_section_is_the_embedded_store() {
        assert_eq!(
            RawStore::default().validate().unwrap(),
            StoreConfig::Embedded
        );
    }

    #[test]
    fn etcd_needs_endpoints_and_tls_off_loopback() {
        let loopback = parse("etcd: {endpoints: [http://127.0.0.1:2379]}").unwrap();
        let StoreConfig::Etcd(options) = loopback else {
            panic!("etcd expected")
        };
        assert_eq!(options.prefix, DEFAULT_PREFIX);
        let empty = parse("etcd: {endpoints: []}").unwrap_err().to_string();
        assert!(empty.contains("store.etcd.endpoints"), "{empty}");
        let remote = parse("etcd: {endpoints: [http://10.0.0.5:2379]}")
            .unwrap_err()
            .to_string();
        assert!(remote.contains("store.etcd.tls"), "{remote}");
        let garbage = parse("etcd: {endpoints: [etcd-0:2379]}")
            .unwrap_err()
            .to_string();
        assert!(garbage.contains("not an http"), "{garbage}");
        assert!(
            parse("etcd: {endpoints: [https://10.0.0.5:2379], tls: {ca: a, cert: b, key: c}}")
                .is_ok()
        );
    }
}
