//! Kubernetes-style names: DNS labels (policy names, namespaces), DNS subdomains (service
//! accounts) and label keys and values, each a validated newtype that (de)serializes as a string.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::de::Parsed;

const MAX_LABEL_LEN: usize = 63;
const MAX_SUBDOMAIN_LEN: usize = 253;

/// Why a string is not a valid name of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "{0:?} is not a DNS label: use 1-63 lowercase letters, digits and `-`, starting and \
         ending with a letter or digit"
    )]
    DnsLabel(String),
    #[error(
        "{0:?} is not a DNS subdomain: use up to 253 characters of dot-separated DNS labels \
         (lowercase letters, digits and `-`)"
    )]
    DnsSubdomain(String),
    #[error(
        "{0:?} is not a label key: use `name` or `prefix/name`, where name is 1-63 letters, \
         digits, `-`, `_` or `.` starting and ending with a letter or digit, and prefix is a \
         DNS subdomain"
    )]
    LabelKey(String),
    #[error(
        "{0:?} is not a label value: use at most 63 letters, digits, `-`, `_` or `.`, starting \
         and ending with a letter or digit"
    )]
    LabelValue(String),
}

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_LEN
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain: DNS labels joined by `.`, at most 253 bytes.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN_LEN && s.split('.').all(is_dns_label)
}

/// The name part of a label key, and a non-empty label value.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_LEN
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

/// Declares a validated string newtype with `as_str`, `Display`, `FromStr` and serde as a plain
/// string; deserializing validates, so a bad value fails at its own field path.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $valid:expr, $error:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($inner);

        impl $name {
            pub fn new(s: &str) -> Result<Self, NameError> {
                if $valid(s) {
                    Ok(Self(s.into()))
                } else {
                    Err($error(s.to_owned()))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Parsed::deserialize(deserializer).map(|Parsed(name)| name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
    };
}

name_type!(
    /// A DNS label: a policy name or a namespace. Shared (`Arc`) so that a `PolicyKey` in a
    /// decision costs no allocation.
    DnsLabel(Arc<str>),
    is_dns_label,
    NameError::DnsLabel
);
name_type!(
    /// A DNS subdomain, as Kubernetes requires of service account names.
    DnsSubdomain(String),
    is_dns_subdomain,
    NameError::DnsSubdomain
);
name_type!(
    /// A Kubernetes label key: `name` or `prefix/name`.
    LabelKey(String),
    is_label_key,
    NameError::LabelKey
);
name_type!(
    /// A Kubernetes label value (may be empty).
    LabelValue(String),
    is_label_value,
    NameError::LabelValue
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "shop", "web-1", "0", &"a".repeat(63)] {
            assert!(
                DnsLabel::new(good).is_ok(),
                "{good:?} should be a DNS label"
            );
        }
        for bad in ["", "-a", "a-", "Shop", "a_b", "a.b", &"a".repeat(64)] {
            assert_eq!(
                DnsLabel::new(bad),
                Err(NameError::DnsLabel(bad.to_owned())),
                "{bad:?} should not be a DNS label"
            );
        }
    }

    #[test]
    fn dns_subdomains() {
        assert!(DnsSubdomain::new("api").is_ok());
        assert!(DnsSubdomain::new("api.v2-x").is_ok());
        for bad in ["", "a..b", ".a", "A", "a_b"] {
            assert!(DnsSubdomain::new(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for good in [
            "app",
            "App_1.x",
            "app.kubernetes.io/name",
            "example.com/Tier",
        ] {
            assert!(
                LabelKey::new(good).is_ok(),
                "{good:?} should be a label key"
            );
        }
        for bad in [
            "",
            "/app",
            "app/",
            "Example.com/app",
            "-app",
            "a/b/c",
            "app name",
        ] {
            assert!(LabelKey::new(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["", "api", "v1.2_x-Y"] {
            assert!(
                LabelValue::new(good).is_ok(),
                "{good:?} should be a label value"
            );
        }
        for bad in ["-api", "api.", "a b", &"a".repeat(64)] {
            assert!(LabelValue::new(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
