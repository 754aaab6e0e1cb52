//! Plumbing shared by the Ferrule binaries. Configuration: YAML parsed with the path of
//! the offending field in every error, environment overrides behind a trait (tests pass a map),
//! and human durations (`8h`, `30m`).
#![forbid(unsafe_code)]

pub mod check;
pub mod http;
pub mod kubernetes;
pub mod metrics;
pub mod process;

use std::collections::HashMap;
use std::time::Duration;

use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config {origin}: field `{field}`: {reason}")]
    Parse {
        origin: String,
        field: String,
        reason: String,
    },
    #[error("config: field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

impl ConfigError {
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Environment lookups, so tests pass a map instead of touching the process environment.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

#[derive(Debug, Default, Clone)]
pub struct MapEnv(pub HashMap<String, String>);

impl MapEnv {
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Reads a config file to text, naming the path on failure.
pub fn read(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Parses YAML; an error names `origin` (usually the file) and the dotted path of the field.
pub fn parse_yaml<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let reason = e.into_inner().to_string();
        // The YAML error may already start with the path; say it once.
        let reason = reason
            .strip_prefix(&format!("{field}: "))
            .map_or(reason.clone(), str::to_owned);
        ConfigError::Parse {
            origin: origin.to_owned(),
            field,
            reason,
        }
    })
}

/// A human duration (`8h`, `90s`, `1h 30m`) or `default` when absent.
pub fn duration(
    value: Option<&str>,
    field: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| ConfigError::invalid(field, format!("{text:?}: {e} (use e.g. 8h, 30m)"))),
    }
}

/// `value` or an error saying the field is required.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, ConfigError> {
    value.ok_or_else(|| ConfigError::invalid(field, "is required"))
}

/// Parses a field with `FromStr`, naming the field and the bad text on failure.
pub fn parse_field<T>(text: &str, field: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| ConfigError::invalid(field, format!("{text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    #[test]
    fn errors_name_the_field_path() {
        let err = parse_yaml::<Outer>("inner:\n  port: 70000\n", "a.yaml").unwrap_err();
        assert!(
            err.to_string().contains("a.yaml") && err.to_string().contains("inner.port"),
            "{err}"
        );
        let err = parse_yaml::<Outer>("inner:\n  prot: 1\n", "a.yaml").unwrap_err();
        assert!(err.to_string().contains("unknown field `prot`"), "{err}");
        let err = parse_yaml::<Outer>("inner: [", "a.yaml").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn durations_are_human() {
        assert_eq!(
            duration(Some("8h"), "f", Duration::ZERO),
            Ok(Duration::from_secs(8 * 3600))
        );
        assert_eq!(
            duration(None, "f", Duration::from_secs(1)),
            Ok(Duration::from_secs(1))
        );
        let err = duration(Some("soon"), "certs.ttl", Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("certs.ttl"), "{err}");
    }
}
