//! The images: `[<registry>/]<repository>/<name>:<tag>`, as `cargo xtask image` names them.

use serde::{Deserialize, Serialize};

use super::{ValuesError, invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// host[:port][/path] in front of `repository`; empty for none.
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub pull_policy: PullPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl Image {
    /// `<registry>/<repository>/<name>:<tag>`.
    pub fn reference(&self, name: &str) -> String {
        match self.registry.trim_end_matches('/') {
            "" => format!("{}/{name}:{}", self.repository, self.tag),
            registry => format!("{registry}/{}/{name}:{}", self.repository, self.tag),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ValuesError> {
        let registry = self.registry.trim_end_matches('/');
        if !registry.is_empty() {
            let (host, path) = registry.split_once('/').unwrap_or((registry, ""));
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
            if !host_ok || !(path.is_empty() || is_repository(path)) {
                return Err(invalid(
                    "image.registry",
                    format!("{registry:?} is not host[:port][/path] (e.g. localhost:5000)"),
                ));
            }
        }
        if !is_repository(&self.repository) {
            return Err(invalid(
                "image.repository",
                format!(
                    "{:?} is not a repository path: lowercase letters and digits, separated \
                     by `.`, `_`, `-` or `/`",
                    self.repository
                ),
            ));
        }
        let tag = self.tag.as_bytes();
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && (tag[0].is_ascii_alphanumeric() || tag[0] == b'_')
            && tag
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !tag_ok {
            return Err(invalid(
                "image.tag",
                format!(
                    "{:?} is not an image tag: up to 128 letters, digits, `_`, `.` and `-`, \
                     not starting with `.` or `-`",
                    self.tag
                ),
            ));
        }
        Ok(())
    }
}

/// Docker's repository path: components of `[a-z0-9]+` joined by `.`, `_`, `__` or `-`s,
/// separated by `/`.
fn is_repository(path: &str) -> bool {
    path.split('/').all(|component| {
        let b = component.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
    })
}
