//! Creating the namespaces, links, addresses, routes and cgroups of a planned cluster. Everything
//! is created inside the cluster's own namespaces (veth pairs are born with each end already in
//! its namespace), so the host's network is never touched.

use std::sync::Mutex;

use super::addressing::UNDERLAY_PREFIX_LEN;
use super::naming::{self, BRIDGE, POD_IF};
use super::topology::{Node, Pod};
use super::{Error, cgroup, host};

/// The first `ip netns add` on a machine makes /run/netns a shared mount; two at once can stack
/// two mounts there. Serialising namespace creation within this process avoids that race
/// between tests that build clusters in parallel.
static NETNS_ADD: Mutex<()> = Mutex::new(());

fn add_netns(name: &str) -> Result<(), Error> {
    let _serial = NETNS_ADD.lock().unwrap_or_else(|e| e.into_inner());
    host::netns_add(name)
}

/// The namespace all nodes are linked to through one bridge, standing in for the network
/// between machines.
pub(super) fn underlay(netns: &str) -> Result<(), Error> {
    add_netns(netns)?;
    host::ip_batch(
        netns,
        &[
            "link set lo up".into(),
            format!("link add {BRIDGE} type bridge"),
            format!("link set {BRIDGE} up"),
        ],
    )
}

pub(super) fn node(cluster: &str, underlay_netns: &str, node: &Node) -> Result<(), Error> {
    add_netns(&node.netns_name)?;
    let port = naming::underlay_port(cluster, node.index);
    host::ip_batch(
        underlay_netns,
        &[
            format!(
                "link add {port} type veth peer name {} netns {}",
                node.underlay_if, node.netns_name
            ),
            format!("link set {port} master {BRIDGE} up"),
        ],
    )?;
    host::ip_batch(
        &node.netns_name,
        &[
            "link set lo up".into(),
            format!(
                "addr add {}/{UNDERLAY_PREFIX_LEN} dev {}",
                node.underlay_ip, node.underlay_if
            ),
            format!("link set {} up", node.underlay_if),
            format!("link add {BRIDGE} type bridge"),
            format!(
                "addr add {}/{} dev {BRIDGE}",
                node.gateway, node.pod_cidr.prefix_len
            ),
            format!("link set {BRIDGE} up"),
        ],
    )?;
    // The node routes between its pods and the underlay like a host running a CNI plugin.
    host::sysctl_in(&node.netns, "net.ipv4.ip_forward", "1")?;
    cgroup::create(&node.cgroup)?;
    cgroup::create(&node.system_cgroup)
}

pub(super) fn pod(node: &Node, pod: &Pod) -> Result<(), Error> {
    add_netns(&pod.netns_name)?;
    host::ip_batch(
        &node.netns_name,
        &[
            format!(
                "link add {} type veth peer name {POD_IF} netns {}",
                pod.host_if, pod.netns_name
            ),
            format!("link set {} master {BRIDGE} up", pod.host_if),
        ],
    )?;
    host::ip_batch(
        &pod.netns_name,
        &[
            "link set lo up".into(),
            format!(
                "addr add {}/{} dev {POD_IF}",
                pod.ip, node.pod_cidr.prefix_len
            ),
            format!("link set {POD_IF} up"),
            format!("route add default via {}", node.gateway),
        ],
    )?;
    cgroup::create(&pod.cgroup)
}

/// In each node, a route to every other node's pods via that node's underlay address.
pub(super) fn routes(nodes: &[Node]) -> Result<(), Error> {
    for node in nodes {
        let lines: Vec<String> = nodes
            .iter()
            .filter(|other| other.index != node.index)
            .map(|other| format!("route add {} via {}", other.pod_cidr, other.underlay_ip))
            .collect();
        if !lines.is_empty() {
            host::ip_batch(&node.netns_name, &lines)?;
        }
    }
    Ok(())
}
