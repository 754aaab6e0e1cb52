//! What the control plane reads from a Pod: whether Ferrule meshes it, the directory entry it
//! becomes, and the (node, identity) it entitles. Pure functions of the objects.

use std::collections::BTreeMap;

use ferrule_identity::{SpiffeId, TrustDomain};
use ferrule_proto::v1;
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};

/// Namespace label (`strict` | `permissive` | `enabled`) and pod annotation (`strict` |
/// `permissive` | `disabled`) that opt pods in or out.
pub use ferrule_config::kubernetes::MODE_KEY as MODE;
use ferrule_config::kubernetes::{MeshMode, PodFacts, pod_mode};

/// Whether the pod has finished for good (its containers will not run again).
pub fn finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

fn spec(pod: &Pod) -> Option<&PodSpec> {
    pod.spec.as_ref()
}

/// The node the pod is scheduled on.
pub fn node(pod: &Pod) -> Option<&str> {
    spec(pod)?.node_name.as_deref().filter(|n| !n.is_empty())
}

/// `spec.serviceAccountName`, which the API server defaults to `default`.
pub fn service_account(pod: &Pod) -> &str {
    spec(pod)
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|sa| !sa.is_empty())
        .unwrap_or("default")
}

/// The identity the pod's service account has in `trust_domain`.
pub fn spiffe_id(pod: &Pod, trust_domain: &TrustDomain) -> Option<SpiffeId> {
    let namespace = pod.metadata.namespace.as_deref()?;
    SpiffeId::workload(trust_domain, namespace, service_account(pod)).ok()
}

/// The pod's IPs: `status.podIPs`, else `status.podIP`.
pub fn ips(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    match listed.is_empty() {
        true => status
            .pod_ip
            .iter()
            .filter(|ip| !ip.is_empty())
            .cloned()
            .collect(),
        false => listed,
    }
}

/// Whether Ferrule meshes the pod, by the rule agents and the CNI plugin apply too
/// ([`pod_mode`]); whether it has finished is the caller's business.
pub fn meshed(pod: &Pod, namespace_labels: Option<&BTreeMap<String, String>>) -> bool {
    let facts = PodFacts {
        namespace_label: namespace_labels
            .and_then(|l| l.get(MODE))
            .map(String::as_str),
        pod_annotation: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MODE))
            .map(String::as_str),
        host_network: spec(pod).and_then(|s| s.host_network) == Some(true),
        finished: false,
    };
    // Meshed in either mode is meshed; the mode itself is the agent's concern.
    pod_mode(facts, MeshMode::Strict).is_ok()
}

/// The directory entry of a meshed pod that runs on a node and has IPs; `None` otherwise.
pub fn workload(
    pod: &Pod,
    namespace_labels: Option<&BTreeMap<String, String>>,
    trust_domain: &TrustDomain,
) -> Option<v1::Workload> {
    if finished(pod) || !meshed(pod, namespace_labels) {
        return None;
    }
    let ips = ips(pod);
    let node = node(pod)?;
    let uid = pod.metadata.uid.as_deref().filter(|uid| !uid.is_empty())?;
    if ips.is_empty() {
        return None;
    }
    Some(v1::Workload {
        uid: uid.to_owned(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        service_account: service_account(pod).to_owned(),
        ips,
        node: node.to_owned(),
        spiffe_id: spiffe_id(pod, trust_domain)?.to_string(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        registered_at: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
    })
}

/// Drops what the control plane never reads, so that the pod cache of a large cluster stays
/// small: containers, volumes, conditions, managed fields and foreign annotations.
pub fn strip(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key == MODE);
    }
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        service_account_name: spec.service_account_name,
        host_network: spec.host_network,
        containers: Vec::new(),
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        pod_ip: status.pod_ip,
        pod_ips: status.pod_ips,
        ..PodStatus::default()
    });
}

#[cfg(test)]
mod tests;
