//! Names Ferrule uses on Kubernetes objects, and the one decision every component makes the same
//! way: is this pod meshed, and in which mode? The agent, the control plane and the CNI plugin
//! all call [`pod_mode`], so they can never disagree about a pod.

/// Namespace label and pod annotation that opt pods in (or, on a pod, out).
pub const MODE_KEY: &str = "ferrule.io/mode";
/// Startup taint on nodes whose agent is not ready yet; the agent removes it from its node.
pub const NOT_READY_TAINT: &str = "ferrule.io/agent-not-ready";
/// The node's name in the agent's pod (downward API `spec.nodeName`); `ferrule check` reads it too.
pub const ENV_NODE_NAME: &str = "FERRULE_NODE_NAME";
/// The agent's own DaemonSet and namespace (set by the manifests): `ferrule-agent uninstall
/// --if-removed` in the preStop hook reads the DaemonSet to tell a removal from an upgrade.
pub const ENV_DAEMONSET: &str = "FERRULE_DAEMONSET";
pub const ENV_POD_NAMESPACE: &str = "FERRULE_POD_NAMESPACE";

/// How a meshed pod treats plaintext from outside the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshMode {
    Strict,
    Permissive,
}

/// What is known about a pod for the decision; plain strings so no Kubernetes types leak here.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodFacts<'a> {
    /// The namespace's `ferrule.io/mode` label.
    pub namespace_label: Option<&'a str>,
    /// The pod's `ferrule.io/mode` annotation.
    pub pod_annotation: Option<&'a str>,
    pub host_network: bool,
    /// `status.phase` is Succeeded or Failed: its sandbox is gone or going.
    pub finished: bool,
}

/// The mode of a pod, or why it is not meshed. Namespace label `strict`, `permissive` or
/// `enabled` (= `default`) opts a namespace in; a pod annotation `strict`, `permissive` or
/// `disabled` overrides it. Host-network and finished pods are never meshed.
pub fn pod_mode(facts: PodFacts<'_>, default: MeshMode) -> Result<MeshMode, &'static str> {
    if facts.host_network {
        return Err("host-network pod");
    }
    if facts.finished {
        return Err("pod has finished");
    }
    match facts.pod_annotation {
        Some("disabled") => return Err("pod annotation ferrule.io/mode=disabled"),
        Some("strict") => return Ok(MeshMode::Strict),
        Some("permissive") => return Ok(MeshMode::Permissive),
        _ => {}
    }
    match facts.namespace_label {
        Some("strict") => Ok(MeshMode::Strict),
        Some("permissive") => Ok(MeshMode::Permissive),
        Some("enabled") => Ok(default),
        _ => Err("namespace not labelled ferrule.io/mode"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(ns: Option<&str>, pod: Option<&str>) -> Result<MeshMode, &'static str> {
        let facts = PodFacts {
            namespace_label: ns,
            pod_annotation: pod,
            ..Default::default()
        };
        pod_mode(facts, MeshMode::Permissive)
    }

    #[test]
    fn the_namespace_label_opts_in_and_the_pod_annotation_overrides_it() {
        assert_eq!(mode(Some("strict"), None), Ok(MeshMode::Strict));
        assert_eq!(mode(Some("enabled"), None), Ok(MeshMode::Permissive));
        assert_eq!(
            mode(Some("permissive"), Some("strict")),
            Ok(MeshMode::Strict)
        );
        assert!(mode(Some("strict"), Some("disabled")).is_err());
        assert_eq!(mode(None, Some("strict")), Ok(MeshMode::Strict));
        assert!(mode(None, None).is_err());
        assert!(mode(Some("yes"), Some("maybe")).is_err());
    }

    #[test]
    fn host_network_and_finished_pods_are_never_meshed() {
        let host = PodFacts {
            namespace_label: Some("strict"),
            pod_annotation: Some("strict"),
            host_network: true,
            finished: false,
        };
        assert_eq!(pod_mode(host, MeshMode::Strict), Err("host-network pod"));
        let done = PodFacts {
            host_network: false,
            finished: true,
            ..host
        };
        assert_eq!(pod_mode(done, MeshMode::Strict), Err("pod has finished"));
    }
}
