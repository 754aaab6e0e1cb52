//! Does this node still carry the agent's startup taint? The agent removes it from its own Node
//! once it is ready; until then pods that are not meant for a meshed node are kept off it.

use ferrule_config::check::Check;
use ferrule_config::kubernetes::{ENV_NODE_NAME, NOT_READY_TAINT};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;

use super::error_text;

pub const NAME: &str = "node-taint";

pub async fn check(client: &Client, node: Option<&str>) -> Check {
    let Some(name) = node else {
        return Check::warn(
            NAME,
            format!("not checked: which node is this? ({ENV_NODE_NAME} is not set)"),
            "pass --node NAME (the node's name in `kubectl get nodes`)",
        );
    };
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get_opt(name).await {
        Ok(Some(node)) => taint_check(name, &node),
        Ok(None) => Check::fail(
            NAME,
            format!("node {name} does not exist in the cluster"),
            "pass --node with the node's name as `kubectl get nodes` shows it",
        ),
        Err(e) => Check::warn(
            NAME,
            format!("cannot read node {name}: {}", error_text(&e)),
            "the kubernetes-rbac check says which permission is missing",
        ),
    }
}

fn taint_check(name: &str, node: &Node) -> Check {
    let tainted = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|t| t.key == NOT_READY_TAINT));
    if tainted {
        Check::warn(
            NAME,
            format!("node {name} still carries the {NOT_READY_TAINT} taint"),
            "the agent is not ready yet: it removes the taint once eBPF is loaded, the CNI \
             plugin is chained and the first configuration is applied; its /ready endpoint \
             (port 15022) lists what is missing",
        )
    } else {
        Check::ok(
            NAME,
            format!("node {name} does not carry the {NOT_READY_TAINT} taint"),
        )
    }
}
