//! The API objects a cluster would hold for the harness: namespaces, service accounts, tainted
//! nodes, one agent pod per node (its token is bound to it), and the workload pods as kubelet
//! reports them (scheduled, running, with their IPs).

use std::collections::BTreeMap;
use std::time::Duration;

use ferrule_config::kubernetes::{MODE_KEY, NOT_READY_TAINT};
use ferrule_kube_double::KubeDouble;
use k8s_openapi::api::core::v1::{
    Namespace, Node as NodeObject, NodeSpec, Pod as PodObject, PodIP, PodSpec, PodStatus,
    ServiceAccount, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{NAMESPACE, SYSTEM_NAMESPACE};
use crate::cluster::{Cluster, Node, Pod};

const AGENT_SA: &str = "ferrule-agent";

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..Default::default()
    }
}

pub fn populate(api: &KubeDouble, cluster: &Cluster) {
    let put_ns = |name: &str, labels: Option<BTreeMap<String, String>>| {
        let ns = Namespace {
            metadata: ObjectMeta {
                labels,
                ..meta(None, name)
            },
            ..Default::default()
        };
        api.put(&ns).expect("namespace");
    };
    put_ns(SYSTEM_NAMESPACE, None);
    put_ns(
        NAMESPACE,
        Some([(MODE_KEY.to_owned(), "strict".to_owned())].into()),
    );
    put_sa(api, SYSTEM_NAMESPACE, AGENT_SA);
    for node in cluster.nodes() {
        put_node(api, node);
        put_agent_pod(api, node);
        for pod in cluster.pods_on(node.index) {
            put_sa(api, &pod.namespace, &pod.service_account);
            put_workload(api, &node.name, pod);
        }
    }
}

fn put_sa(api: &KubeDouble, namespace: &str, name: &str) {
    let sa = ServiceAccount {
        metadata: meta(Some(namespace), name),
        ..Default::default()
    };
    api.put(&sa).expect("service account");
}

/// Nodes start with the startup taint, as the node pool adds it.
fn put_node(api: &KubeDouble, node: &Node) {
    let object = NodeObject {
        metadata: meta(None, &node.name),
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: NOT_READY_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    api.put(&object).expect("node");
}

fn agent_pod_name(node: &Node) -> String {
    format!("ferrule-agent-{}", node.name)
}

fn put_agent_pod(api: &KubeDouble, node: &Node) {
    let pod = PodObject {
        metadata: meta(Some(SYSTEM_NAMESPACE), &agent_pod_name(node)),
        spec: Some(PodSpec {
            node_name: Some(node.name.clone()),
            service_account_name: Some(AGENT_SA.into()),
            host_network: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    api.put(&pod).expect("agent pod");
}

/// A projected token of the agent's service account (audience `ferrule`) bound to its pod.
pub fn agent_token(api: &KubeDouble, node: &Node) -> String {
    let name = agent_pod_name(node);
    let pod: PodObject = api.get(SYSTEM_NAMESPACE, &name).expect("agent pod exists");
    let uid = pod.metadata.uid.expect("uid");
    api.issue_token(
        SYSTEM_NAMESPACE,
        AGENT_SA,
        &["ferrule"],
        Some((&name, &uid)),
        Duration::from_secs(3600),
    )
    .expect("issuing the agent's token")
    .token
}

fn put_workload(api: &KubeDouble, node: &str, pod: &Pod) {
    let object = running_pod(
        Some(pod.uid.clone()),
        (&pod.namespace, &pod.name, &pod.service_account),
        node,
        &pod.ip.to_string(),
    );
    let stored = api.put(&object).expect("workload pod");
    assert_eq!(
        stored.metadata.uid.as_deref(),
        Some(pod.uid.as_str()),
        "the double keeps the harness's pod uid"
    );
}

/// A Running, meshed Pod object `(namespace, name, service account)` on `node` at `ip`.
fn running_pod(
    uid: Option<String>,
    (namespace, name, sa): (&str, &str, &str),
    node: &str,
    ip: &str,
) -> PodObject {
    PodObject {
        metadata: ObjectMeta {
            uid,
            labels: Some([("app".to_owned(), name.to_owned())].into()),
            ..meta(Some(namespace), name)
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_owned()),
            service_account_name: Some(sa.to_owned()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.to_owned()),
            pod_ips: Some(vec![PodIP { ip: ip.to_owned() }]),
            ..Default::default()
        }),
    }
}

/// Another Running Pod object `name` (service account `sa`) at `pod`'s address on `node`: a
/// stale object whose IP was reused, or a forged status.
pub fn put_pod_sharing_address(api: &KubeDouble, node: &str, pod: &Pod, name: &str, sa: &str) {
    put_sa(api, &pod.namespace, sa);
    let object = running_pod(None, (&pod.namespace, name, sa), node, &pod.ip.to_string());
    api.put(&object).expect("pod sharing an address");
}

pub fn delete_pod(api: &KubeDouble, pod: &Pod) {
    delete_pod_named(api, &pod.namespace, &pod.name);
}

pub fn delete_pod_named(api: &KubeDouble, namespace: &str, name: &str) {
    api.delete::<PodObject>(namespace, name)
        .expect("deleting the pod object");
}

pub fn annotate_pod(api: &KubeDouble, pod: &Pod, key: &str, value: &str) {
    let mut object: PodObject = api.get(&pod.namespace, &pod.name).expect("pod object");
    object
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(key.to_owned(), value.to_owned());
    api.put(&object).expect("annotating the pod");
}
