//! When the agent cannot be reached: does this pod have to be meshed? The facts come from a
//! [`PodFactsSource`] (the Kubernetes API in the plugin, a table in tests); the rule is
//! [`decide`], the same one the agent applies.

mod kube;

pub use self::kube::{Error, KubeApi};

use std::future::Future;

use crate::netconf::PluginConf;

pub use ferrule_config::kubernetes::MODE_KEY;
use ferrule_config::kubernetes::MeshMode;

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

/// The agent's own rule ([`ferrule_config::kubernetes::pod_mode`]), with the reason in words
/// for the error message.
pub fn decide(facts: &PodFacts) -> Decision {
    let shared = ferrule_config::kubernetes::PodFacts {
        namespace_label: facts.namespace_label.as_deref(),
        pod_annotation: facts.pod_annotation.as_deref(),
        host_network: facts.host_network,
        finished: false,
    };
    // The default mode does not matter here: meshed in either mode means fail closed.
    match ferrule_config::kubernetes::pod_mode(shared, MeshMode::Strict) {
        Err(reason) => Decision::NotMeshed(reason.into()),
        Ok(_) => Decision::Meshed(
            match (facts.pod_annotation.as_deref(), &facts.namespace_label) {
                (Some(mode @ ("strict" | "permissive")), _) => {
                    format!("pod annotation {MODE_KEY}={mode}")
                }
                (_, label) => format!(
                    "namespace label {MODE_KEY}={}",
                    label.as_deref().unwrap_or("")
                ),
            },
        ),
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
