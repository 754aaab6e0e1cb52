//! Where each record lives under the store's prefix. Keys are readable with `etcdctl get
//! --prefix <prefix>`; values are JSON, except configuration records (a presence byte, then the
//! resource's protobuf bytes, as the embedded store keeps them).

use crate::store::config::ResourceKind;

#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` gets a trailing `/` if it has none, so that `/ferrule` never matches `/ferrule2/`.
    pub(super) fn new(prefix: &str) -> Self {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { prefix }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn token(&self, id: &str) -> String {
        format!("{}tokens/{id}", self.prefix)
    }

    pub(super) fn tokens(&self) -> String {
        format!("{}tokens/", self.prefix)
    }

    pub(super) fn node(&self, name: &str) -> String {
        format!("{}nodes/{name}", self.prefix)
    }

    pub(super) fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    pub(super) fn certificate(&self, serial: &str) -> String {
        format!("{}certificates/{serial}", self.prefix)
    }

    pub(super) fn certificates(&self) -> String {
        format!("{}certificates/", self.prefix)
    }

    pub(super) fn config(&self, kind: ResourceKind, key: &str) -> String {
        format!("{}config/{}/{key}", self.prefix, kind as u8)
    }

    pub(super) fn configs(&self) -> String {
        format!("{}config/", self.prefix)
    }

    /// (kind, key) of a configuration record's etcd key, if it is one.
    pub(super) fn parse_config(&self, etcd_key: &[u8]) -> Option<(ResourceKind, String)> {
        let rest = std::str::from_utf8(etcd_key)
            .ok()?
            .strip_prefix(&self.configs())?;
        let (kind, key) = rest.split_once('/')?;
        Some((ResourceKind::from_u8(kind.parse().ok()?)?, key.to_owned()))
    }

    /// The configuration's own bookkeeping, under its prefix so that one watch sees it too.
    pub(super) fn config_meta(&self) -> String {
        format!("{}config/meta/", self.prefix)
    }

    /// Created once; configuration versions of different epochs never compare.
    pub(super) fn epoch(&self) -> String {
        format!("{}epoch", self.config_meta())
    }

    /// Rewritten by every configuration write, so its modification revision is the
    /// configuration's version.
    pub(super) fn config_version(&self) -> String {
        format!("{}version", self.config_meta())
    }

    /// Tombstones up to this version are gone.
    pub(super) fn compacted(&self) -> String {
        format!("{}compacted", self.config_meta())
    }

    pub(super) fn is_config_meta(&self, etcd_key: &[u8]) -> bool {
        etcd_key.starts_with(self.config_meta().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_round_trip_and_other_keys_are_not_config() {
        let keys = Keys::new("/ferrule");
        let key = keys.config(ResourceKind::Policy, "shop/allow-web");
        assert_eq!(key, "/ferrule/config/3/shop/allow-web");
        assert_eq!(
            keys.parse_config(key.as_bytes()),
            Some((ResourceKind::Policy, "shop/allow-web".to_owned()))
        );
        assert_eq!(keys.parse_config(keys.node("n1").as_bytes()), None);
        assert_eq!(keys.parse_config(keys.compacted().as_bytes()), None);
        assert!(keys.is_config_meta(keys.epoch().as_bytes()));
        assert!(!keys.is_config_meta(key.as_bytes()));
        assert_eq!(keys.parse_config(b"/ferrule/config/9/x"), None);
    }

    #[test]
    fn a_prefix_never_matches_a_longer_sibling() {
        assert_eq!(Keys::new("/ferrule").tokens(), "/ferrule/tokens/");
        assert_eq!(Keys::new("/ferrule/").tokens(), "/ferrule/tokens/");
    }
}
