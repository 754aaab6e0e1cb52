//! From a Pod object (and its Namespace) to what the pod manager enrolls.

use std::net::IpAddr;
use std::path::PathBuf;

use ferrule_config::kubernetes::{MODE_KEY, MeshMode, PodFacts, pod_mode};
use k8s_openapi::api::core::v1::{Namespace, Pod};

use crate::enroll::{Mode, PodSpec};

/// The pod's mode, or why it is not meshed.
pub fn mode_of(pod: &Pod, namespace: Option<&Namespace>, default: Mode) -> Result<Mode, String> {
    let label = namespace
        .and_then(|ns| ns.metadata.labels.as_ref())
        .and_then(|l| l.get(MODE_KEY))
        .map(String::as_str);
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MODE_KEY))
        .map(String::as_str);
    let spec = pod.spec.as_ref();
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let facts = PodFacts {
        namespace_label: label,
        pod_annotation: annotation,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        finished: matches!(phase, Some("Succeeded" | "Failed")),
    };
    let default = match default {
        Mode::Strict => MeshMode::Strict,
        Mode::Permissive => MeshMode::Permissive,
    };
    match pod_mode(facts, default) {
        Ok(MeshMode::Strict) => Ok(Mode::Strict),
        Ok(MeshMode::Permissive) => Ok(Mode::Permissive),
        Err(reason) => Err(reason.to_owned()),
    }
}

/// `status.podIPs` (or the older `status.podIP`), parsed.
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    let ips: Vec<IpAddr> = listed.filter_map(|ip| ip.parse().ok()).collect();
    if !ips.is_empty() {
        return ips;
    }
    status
        .pod_ip
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect()
}

/// Where the pod lives on this node, as found by the CNI plugin or in /proc and the cgroup tree.
pub struct Placement {
    pub netns: PathBuf,
    pub cgroup: PathBuf,
    pub ips: Vec<IpAddr>,
}

/// The enrollment spec: identity and labels from the API object, placement from the node.
pub fn pod_spec(pod: &Pod, mode: Mode, placement: Placement) -> PodSpec {
    let meta = &pod.metadata;
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    PodSpec {
        uid: meta.uid.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        service_account,
        ips: placement.ips,
        netns: placement.netns,
        cgroup: placement.cgroup,
        mode,
        labels: meta.labels.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodSpec as K8sPodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn namespace(label: Option<&str>) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("shop".into()),
                labels: label.map(|l| [(MODE_KEY.to_owned(), l.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                uid: Some("0b5f8a3e-7d1c-4e2a-9f00-1234567890ab".into()),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..Default::default()
            },
            spec: Some(K8sPodSpec {
                service_account_name: Some("web".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ips: Some(vec![PodIP {
                    ip: "10.244.0.7".into(),
                }]),
                phase: Some("Running".into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_mode_follows_namespace_label_and_pod_annotation() {
        let p = pod();
        assert_eq!(
            mode_of(&p, Some(&namespace(Some("enabled"))), Mode::Permissive),
            Ok(Mode::Permissive)
        );
        assert!(mode_of(&p, Some(&namespace(None)), Mode::Strict).is_err());
        assert!(mode_of(&p, None, Mode::Strict).is_err());
        let mut annotated = pod();
        annotated.metadata.annotations = Some([(MODE_KEY.to_owned(), "strict".to_owned())].into());
        assert_eq!(
            mode_of(&annotated, Some(&namespace(None)), Mode::Permissive),
            Ok(Mode::Strict)
        );
        let mut host = pod();
        host.spec.as_mut().unwrap().host_network = Some(true);
        assert_eq!(
            mode_of(&host, Some(&namespace(Some("strict"))), Mode::Strict),
            Err("host-network pod".to_owned())
        );
    }

    #[test]
    fn the_spec_takes_identity_and_labels_from_the_pod() {
        let placement = Placement {
            netns: "/var/run/netns/cni-1".into(),
            cgroup: "/sys/fs/cgroup/kubepods/pod1".into(),
            ips: pod_ips(&pod()),
        };
        let spec = pod_spec(&pod(), Mode::Strict, placement);
        assert_eq!(spec.service_account, "web");
        assert_eq!(spec.ips, vec!["10.244.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(spec.labels["app"], "web");
        assert!(spec.validate().is_ok());
        let mut no_sa = pod();
        no_sa.spec.as_mut().unwrap().service_account_name = None;
        assert_eq!(
            pod_spec(
                &no_sa,
                Mode::Strict,
                Placement {
                    netns: "/n".into(),
                    cgroup: "/c".into(),
                    ips: vec![]
                }
            )
            .service_account,
            "default"
        );
    }
}
