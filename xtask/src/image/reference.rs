//! Image names: `[<registry>/]ferrule/<image>:<tag>`, in the two spellings the archive needs.

use std::fmt;

use anyhow::{Context as _, bail};

/// A tagged image name as the user asked for it (`ferrule/agent:0.1.0`,
/// `registry.example.com:5000/mesh/ferrule/agent:0.1.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    repository: String,
    tag: String,
}

impl Reference {
    /// `registry` (host[:port][/path], no trailing slash needed) goes in front of `name`.
    pub fn new(registry: Option<&str>, name: &str, tag: &str) -> anyhow::Result<Self> {
        check_tag(tag)?;
        let repository = match registry.map(|r| r.trim_end_matches('/')) {
            Some(registry) => {
                check_registry(registry).with_context(|| format!("--registry {registry:?}"))?;
                format!("{registry}/{name}")
            }
            None => name.to_owned(),
        };
        Ok(Self {
            repository,
            tag: tag.to_owned(),
        })
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Fully qualified, as containerd and the kubelet store it: a name without a registry host
    /// is on docker.io (`docker.io/ferrule/agent:0.1.0`). This is what `ctr images ls` shows.
    pub fn normalized(&self) -> String {
        let host = if has_registry_host(&self.repository) {
            ""
        } else {
            "docker.io/"
        };
        format!("{host}{}:{}", self.repository, self.tag)
    }

    /// `repository` in Docker's short ("familiar") form, the key of the `repositories` file.
    pub fn familiar_repository(&self) -> &str {
        self.repository
            .strip_prefix("docker.io/")
            .unwrap_or(&self.repository)
    }
}

/// `repository:tag` in the familiar form, as `docker images` and manifest.json's RepoTags have it.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.familiar_repository(), self.tag)
    }
}

/// Docker's rule: the first component names a registry host when it has a `.` or a `:` or is
/// `localhost`; otherwise the name is on docker.io.
fn has_registry_host(repository: &str) -> bool {
    match repository.split_once('/') {
        Some((first, _)) => first.contains(['.', ':']) || first == "localhost",
        None => false,
    }
}

fn check_tag(tag: &str) -> anyhow::Result<()> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > 128 {
        bail!("--tag {tag:?}: a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with `.` or `-`");
    }
    Ok(())
}

/// `host[:port]` (when the first component is a host) then lowercase path components.
fn check_registry(registry: &str) -> anyhow::Result<()> {
    let mut components = registry.split('/');
    let first = components.next().unwrap_or_default();
    let path_component = |c: &str| {
        !c.is_empty()
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
    };
    let host = |c: &str| {
        let (name, port) = c.split_once(':').unwrap_or((c, "0"));
        !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-'))
            && !port.is_empty()
            && port.chars().all(|ch| ch.is_ascii_digit())
    };
    if !(host(first) || path_component(first)) || !components.all(path_component) {
        bail!("expected host[:port][/path] with lowercase path components");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Reference;

    fn names(registry: Option<&str>) -> (String, String, String) {
        let reference = Reference::new(registry, "ferrule/agent", "0.1.0").unwrap();
        (
            reference.to_string(),
            reference.normalized(),
            reference.familiar_repository().to_owned(),
        )
    }

    #[test]
    fn names_without_a_registry_host_are_on_docker_io() {
        let owned = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            names(None),
            owned(
                "ferrule/agent:0.1.0",
                "docker.io/ferrule/agent:0.1.0",
                "ferrule/agent"
            )
        );
        assert_eq!(
            names(Some("localhost:5000/")),
            owned(
                "localhost:5000/ferrule/agent:0.1.0",
                "localhost:5000/ferrule/agent:0.1.0",
                "localhost:5000/ferrule/agent"
            )
        );
        assert_eq!(
            names(Some("registry.example.com/mesh")).1,
            "registry.example.com/mesh/ferrule/agent:0.1.0"
        );
        assert_eq!(
            names(Some("docker.io/acme")),
            owned(
                "acme/ferrule/agent:0.1.0",
                "docker.io/acme/ferrule/agent:0.1.0",
                "acme/ferrule/agent"
            )
        );
        assert_eq!(names(Some("acme")).1, "docker.io/acme/ferrule/agent:0.1.0");
    }

    #[test]
    fn bad_tags_and_registries_are_refused_naming_the_flag() {
        for tag in ["", ".x", "-x", "1.0+build", "a b", &"x".repeat(129)] {
            let error = Reference::new(None, "ferrule/agent", tag).unwrap_err();
            assert!(error.to_string().contains("--tag"), "{tag:?}: {error}");
        }
        for registry in ["Acme/Mesh", "host:port", "a//b", "a b", "x@sha256"] {
            let error = format!(
                "{:#}",
                Reference::new(Some(registry), "ferrule/agent", "1").unwrap_err()
            );
            assert!(error.contains("--registry"), "{registry:?}: {error}");
        }
        assert!(
            Reference::new(Some("Registry.Example:443/x"), "ferrule/agent", "v1_0-rc.1").is_ok()
        );
    }
}
