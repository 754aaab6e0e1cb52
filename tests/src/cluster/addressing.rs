//! The address plan: node `n` owns pod CIDR 10.244.n.0/24 with its bridge at .1 and pod `i` at
//! .(10+i); node `n` sits at 10.255.0.(n+1)/24 on the underlay (.0 would be the network
//! address). Every cluster lives in its own namespaces, so two clusters reuse the same plan.

use std::fmt;
use std::net::Ipv4Addr;

pub const MAX_NODES: usize = 100;
pub const MAX_PODS_PER_NODE: usize = 240;

const FIRST_POD_HOST: usize = 10;
const NODE_PREFIX_LEN: u8 = 24;
pub(super) const UNDERLAY_PREFIX_LEN: u8 = 24;

/// An IPv4 network such as `10.244.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.network) & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Whether the plan has addresses for this many nodes and pods.
pub(super) fn fits(nodes: usize, pods_per_node: usize) -> bool {
    (1..=MAX_NODES).contains(&nodes) && (1..=MAX_PODS_PER_NODE).contains(&pods_per_node)
}

fn octet(value: usize) -> u8 {
    u8::try_from(value).unwrap_or_else(|_| panic!("{value} is outside the address plan"))
}

pub(super) fn pod_cidr(node: usize) -> Ipv4Cidr {
    Ipv4Cidr {
        network: Ipv4Addr::new(10, 244, octet(node), 0),
        prefix_len: NODE_PREFIX_LEN,
    }
}

/// The node's bridge address, the pods' default gateway.
pub(super) fn gateway(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, octet(node), 1)
}

pub(super) fn pod_ip(node: usize, pod: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, octet(node), octet(FIRST_POD_HOST + pod))
}

pub(super) fn underlay_ip(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, 0, octet(node + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_cluster_stays_inside_its_networks() {
        let (node, pod) = (MAX_NODES - 1, MAX_PODS_PER_NODE - 1);
        assert!(fits(MAX_NODES, MAX_PODS_PER_NODE));
        assert!(pod_cidr(node).contains(pod_ip(node, pod)));
        assert!(pod_cidr(node).contains(gateway(node)));
        assert_eq!(pod_ip(node, pod), Ipv4Addr::new(10, 244, 99, 249));
        assert_eq!(underlay_ip(node), Ipv4Addr::new(10, 255, 0, 100));
        assert!(!fits(0, 1) && !fits(1, 0) && !fits(MAX_NODES + 1, 1));
        assert!(!fits(1, MAX_PODS_PER_NODE + 1));
    }

    #[test]
    fn pod_cidrs_of_different_nodes_do_not_overlap() {
        assert_eq!(pod_cidr(1).to_string(), "10.244.1.0/24");
        assert!(!pod_cidr(0).contains(pod_ip(1, 0)));
        assert!(!pod_cidr(1).contains(underlay_ip(1)));
    }
}
