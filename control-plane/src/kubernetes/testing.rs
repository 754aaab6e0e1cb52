//! Pods and namespaces for unit tests, built as the API server returns them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodIP, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A running pod `namespace/name` with uid `<name>-uid`, service account `sa`, on `node`,
/// with `ips`.
pub fn pod(namespace: &str, name: &str, sa: &str, node: &str, ips: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid: Some(format!("{name}-uid")),
            labels: Some(BTreeMap::from([("app".into(), name.into())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.into()),
            service_account_name: Some(sa.into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: ips.first().map(|ip| ip.to_string()),
            pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
            ..PodStatus::default()
        }),
    }
}

pub fn annotated(mut pod: Pod, mode: &str) -> Pod {
    pod.metadata
        .annotations
        .get_or_insert_default()
        .insert("ferrule.io/mode".into(), mode.into());
    pod
}

pub fn in_phase(mut pod: Pod, phase: &str) -> Pod {
    pod.status.get_or_insert_default().phase = Some(phase.into());
    pod
}

pub fn labels(mode: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("ferrule.io/mode".into(), mode.into())])
}
