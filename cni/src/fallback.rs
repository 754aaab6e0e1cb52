//! When the agent cannot be reached: does this pod have to be meshed? The facts come from a
//! [`PodFactsSource`] (the Kubernetes API in the plugin, a table in tests); the rule is
//! [`decide`], the same one the agent applies.

mod kube;

pub use self::kube::{Error, KubeApi};

use std::future::Future;

use crate::netconf::PluginConf;

/// Namespace label and pod annotation that put pods under the mesh.
pub const MODE_KEY: &str = "ferrule.io/mode";

/// What decides whether a pod is meshed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub host_network: bool,
    /// The pod's `ferrule.io/mode` annotation: `strict`, `permissive` or `disabled`.
    pub pod_annotation: Option<String>,
    /// The namespace's `ferrule.io/mode` label: `strict`, `permissive` or `enabled`.
    pub namespace_label: Option<String>,
}

/// Where [`PodFacts`] come from.
pub trait PodFactsSource {
    type Error: std::error::Error;
    fn facts(
        &self,
        conf: &PluginConf,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<PodFacts, Self::Error>>;
}

/// Whether the pod must be meshed, and why, in words for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Meshed(String),
    NotMeshed(String),
}

/// Host-network pods never; then the pod annotation (`strict`/`permissive` opt in, `disabled`
/// opts out); then the namespace label (`strict`/`permissive`/`enabled`); else not meshed.
pub fn decide(facts: &PodFacts) -> Decision {
    if facts.host_network {
        return Decision::NotMeshed("host-network pod".into());
    }
    match facts.pod_annotation.as_deref() {
        Some(mode @ ("strict" | "permissive")) => {
            return Decision::Meshed(format!("pod annotation {MODE_KEY}={mode}"));
        }
        Some(mode @ "disabled") => {
            return Decision::NotMeshed(format!("pod annotation {MODE_KEY}={mode}"));
        }
        _ => {}
    }
    match facts.namespace_label.as_deref() {
        Some(mode @ ("strict" | "permissive" | "enabled")) => {
            Decision::Meshed(format!("namespace label {MODE_KEY}={mode}"))
        }
        Some(other) => Decision::NotMeshed(format!(
            "namespace label {MODE_KEY}={other} is not a mesh mode"
        )),
        None => Decision::NotMeshed(format!("namespace has no {MODE_KEY} label")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(host: bool, annotation: Option<&str>, label: Option<&str>) -> PodFacts {
        PodFacts {
            host_network: host,
            pod_annotation: annotation.map(Into::into),
            namespace_label: label.map(Into::into),
        }
    }

    fn meshed(f: PodFacts) -> bool {
        matches!(decide(&f), Decision::Meshed(_))
    }

    #[test]
    fn namespace_label_meshes() {
        for mode in ["strict", "permissive", "enabled"] {
            assert!(meshed(facts(false, None, Some(mode))), "{mode}");
        }
        assert_eq!(
            decide(&facts(false, None, Some("strict"))),
            Decision::Meshed("namespace label ferrule.io/mode=strict".into())
        );
    }

    #[test]
    fn unlabelled_or_unknown_label_is_not_meshed() {
        assert!(!meshed(facts(false, None, None)));
        assert!(!meshed(facts(false, None, Some("yes"))));
    }

    #[test]
    fn pod_annotation_overrides_the_namespace() {
        assert!(meshed(facts(false, Some("strict"), None)));
        assert!(meshed(facts(false, Some("permissive"), Some("junk"))));
        assert!(!meshed(facts(false, Some("disabled"), Some("strict"))));
        assert!(
            meshed(facts(false, Some("junk"), Some("enabled"))),
            "junk is ignored"
        );
    }

    #[test]
    fn host_network_pods_are_never_meshed() {
        assert_eq!(
            decide(&facts(true, Some("strict"), Some("strict"))),
            Decision::NotMeshed("host-network pod".into())
        );
    }
}
