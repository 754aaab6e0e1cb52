//! `PolicyKey`: what identifies a policy (namespace + name), and how it orders.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::{DnsLabel, NameError};

/// A policy's identity: its namespace (absent for mesh-wide policies) and name.
///
/// Displays and (de)serializes as `namespace/name`, or `name` for a mesh-wide policy. Keys order
/// mesh-wide policies first, then by namespace, then by name; evaluation reports the first
/// matching rule in this order. Cloning is cheap (shared strings), so decisions can carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    namespace: Option<DnsLabel>,
    name: DnsLabel,
}

impl PolicyKey {
    pub fn new(namespace: Option<&str>, name: &str) -> Result<Self, NameError> {
        Ok(Self {
            namespace: namespace.map(DnsLabel::new).transpose()?,
            name: DnsLabel::new(name)?,
        })
    }

    pub(crate) fn from_labels(namespace: Option<DnsLabel>, name: DnsLabel) -> Self {
        Self { namespace, name }
    }

    /// `None` for a mesh-wide policy.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_ref().map(DnsLabel::as_str)
    }

    pub fn name(&self) -> &str {
        self.name.as_str()
    }
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// Parses `namespace/name` or `name` (mesh-wide), as `ferrule policy get` takes it.
impl FromStr for PolicyKey {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        match s.split_once('/') {
            Some((namespace, name)) => Self::new(Some(namespace), name),
            None => Self::new(None, s),
        }
    }
}

impl Serialize for PolicyKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_and_parses_both_forms() {
        let namespaced: PolicyKey = "shop/allow-web".parse().unwrap();
        assert_eq!(namespaced.namespace(), Some("shop"));
        assert_eq!(namespaced.name(), "allow-web");
        assert_eq!(namespaced.to_string(), "shop/allow-web");
        let mesh_wide: PolicyKey = "allow-web".parse().unwrap();
        assert_eq!(mesh_wide.namespace(), None);
        assert_eq!(mesh_wide.to_string(), "allow-web");
        assert!("shop/".parse::<PolicyKey>().is_err());
        assert!("a/b/c".parse::<PolicyKey>().is_err());
        assert!("Shop/x".parse::<PolicyKey>().is_err());
    }

    #[test]
    fn mesh_wide_keys_sort_first() {
        let mut keys: Vec<PolicyKey> = ["shop/a", "z", "bank/b", "a"]
            .iter()
            .map(|k| k.parse().unwrap())
            .collect();
        keys.sort();
        let shown: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["a", "z", "bank/b", "shop/a"]);
    }
}
