//! Names of a cluster's namespaces, links and cgroups. Every name starts with the cluster name
//! (`fr` + 6 random hex digits), so two clusters never clash and leftovers of a crashed run can be
//! found again; names that are not of that shape are never touched.

use std::fs::File;
use std::io::{self, Read as _};

/// What every cluster name starts with.
pub const CLUSTER_PREFIX: &str = "fr";
const RANDOM_HEX_DIGITS: usize = 6;
const CLUSTER_NAME_LEN: usize = CLUSTER_PREFIX.len() + RANDOM_HEX_DIGITS;

/// The bridge in each node netns (holding the pod gateway) and in the underlay netns.
pub const BRIDGE: &str = "br0";
/// The pod end of a pod's veth pair, and a node's underlay-facing interface: named like the
/// primary interface of a real pod or machine.
pub const POD_IF: &str = "eth0";
pub const NODE_UNDERLAY_IF: &str = "eth0";

pub(super) fn new_cluster_name() -> io::Result<String> {
    let bytes: [u8; RANDOM_HEX_DIGITS / 2] = random_bytes()?;
    Ok(format!("{CLUSTER_PREFIX}{}", hex(&bytes)))
}

/// A random version-4 UUID, as Kubernetes uses for pod uids.
pub(super) fn uuid_v4() -> io::Result<String> {
    let mut b: [u8; 16] = random_bytes()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        hex(&b[0..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    ))
}

fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0; N];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cluster that a namespace, link, cgroup or owner file named `object` belongs to, if it
/// has the shape of one of ours.
pub(super) fn cluster_of(object: &str) -> Option<&str> {
    let name = object.get(..CLUSTER_NAME_LEN)?;
    let random = name.strip_prefix(CLUSTER_PREFIX)?;
    random
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then_some(name)
}

pub(super) fn underlay_netns(cluster: &str) -> String {
    format!("{cluster}-underlay")
}

pub(super) fn node_netns(cluster: &str, node: usize) -> String {
    format!("{cluster}-{}", node_name(node))
}

pub(super) fn pod_netns(cluster: &str, node: usize, pod: usize) -> String {
    format!("{cluster}-{}", pod_name(node, pod))
}

pub(super) fn node_name(node: usize) -> String {
    format!("node-{node}")
}

pub(super) fn pod_name(node: usize, pod: usize) -> String {
    format!("pod-{node}-{pod}")
}

/// The underlay-netns end of a node's link, e.g. `fr0a1b2cn1`.
pub(super) fn underlay_port(cluster: &str, node: usize) -> String {
    format!("{cluster}n{node}")
}

/// The node-netns end of a pod's veth pair, e.g. `fr0a1b2cn1p12`: 15 characters at most for
/// 100 nodes with 1000 pods each, above what the address plan allows.
pub(super) fn pod_host_if(cluster: &str, node: usize, pod: usize) -> String {
    format!("{cluster}n{node}p{pod}")
}

/// The cgroup (relative to the cluster's) that node processes such as the agent run in: beside
/// the node's pod cgroups, not above them, so programs attached to the node cgroup never
/// capture the agent's own connections.
pub(super) fn node_system_cgroup(node: usize) -> String {
    format!("system/{}", node_name(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux refuses interface names longer than this (IFNAMSIZ - 1).
    const MAX_IFNAME_LEN: usize = 15;

    #[test]
    fn cluster_names_are_recognised_and_others_are_not() {
        let name = new_cluster_name().unwrap();
        assert_eq!(name.len(), CLUSTER_NAME_LEN, "{name}");
        assert_eq!(cluster_of(&name), Some(name.as_str()));
        assert_eq!(
            cluster_of(&pod_netns(&name, 3, 4)),
            Some(name.as_str()),
            "a pod netns belongs to its cluster"
        );
        for foreign in [
            "fr",
            "frazzle-node",
            "fr12345",
            "fR123456",
            "eth0",
            "docker0",
        ] {
            assert_eq!(cluster_of(foreign), None, "{foreign} is not ours");
        }
    }

    #[test]
    fn interface_names_fit_linux_limit_at_the_largest_cluster() {
        let name = new_cluster_name().unwrap();
        let longest = [
            pod_host_if(&name, 99, 999),
            underlay_port(&name, 99),
            BRIDGE.into(),
            POD_IF.into(),
        ];
        for ifname in longest {
            assert!(ifname.len() <= MAX_IFNAME_LEN, "{ifname} is too long");
        }
    }

    #[test]
    fn pod_uids_are_version_4_uuids() {
        let uid = uuid_v4().unwrap();
        let groups: Vec<&str> = uid.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12], "{uid}");
        assert!(groups[2].starts_with('4'), "{uid}");
        assert_ne!(uid, uuid_v4().unwrap());
    }
}
