//! Pod networks: the address ranges bound to a node when its join token is created. A node may
//! put workloads into the directory only at addresses inside its own ranges, and no two nodes'
//! ranges overlap, so a compromised node cannot claim another node's pod addresses (and have
//! agents pin an identity of its choosing for them).

use std::net::IpAddr;

use ipnet::IpNet;
use tonic::Status;

use crate::store::NodeRecord;

/// Narrowest prefixes we accept: a /0 or /4 "pod network" would make the binding meaningless.
const MIN_V4_PREFIX: u8 = 8;
const MIN_V6_PREFIX: u8 = 32;

/// Parses the pod networks of a token request: network addresses with sane prefixes, no overlap
/// among themselves.
pub fn parse(cidrs: &[String]) -> Result<Vec<IpNet>, Status> {
    let mut nets: Vec<IpNet> = Vec::with_capacity(cidrs.len());
    for text in cidrs {
        let net = parse_one(text)
            .map_err(|e| Status::invalid_argument(format!("pod CIDR {text:?}: {e}")))?;
        if let Some(other) = nets.iter().find(|n| overlap(n, &net)) {
            return Err(Status::invalid_argument(format!(
                "pod CIDRs {other} and {net} overlap"
            )));
        }
        nets.push(net);
    }
    Ok(nets)
}

fn parse_one(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text
        .parse()
        .map_err(|_| "not a network such as 10.244.1.0/24 or fd00:10:244:1::/64".to_owned())?;
    if net.trunc() != net {
        return Err(format!("host bits are set; the network is {}", net.trunc()));
    }
    let min = match net {
        IpNet::V4(_) => MIN_V4_PREFIX,
        IpNet::V6(_) => MIN_V6_PREFIX,
    };
    if net.prefix_len() < min {
        return Err(format!("prefix /{} is wider than /{min}", net.prefix_len()));
    }
    Ok(net)
}

pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Another node whose pod networks overlap `nets`: `(node, its network, ours)`.
pub fn overlapping_node<'a>(
    nodes: &'a [NodeRecord],
    node: &str,
    nets: &[IpNet],
) -> Option<(&'a str, IpNet, IpNet)> {
    nodes
        .iter()
        .filter(|other| other.name != node)
        .find_map(|other| {
            other.pod_cidrs.iter().find_map(|theirs| {
                let ours = nets.iter().find(|ours| overlap(theirs, ours))?;
                Some((other.name.as_str(), *theirs, *ours))
            })
        })
}

/// The message for a node claiming an address outside its pod networks.
pub fn outside(node: &NodeRecord, ip: IpAddr) -> Option<String> {
    if node.pod_cidrs.iter().any(|net| net.contains(&ip)) {
        return None;
    }
    Some(if node.pod_cidrs.is_empty() {
        format!(
            "node {} has no pod CIDR, so it may not register workloads; give it one when \
             creating its join token (ferrule node token create --pod-cidr ...) and join again",
            node.name
        )
    } else {
        let nets: Vec<String> = node.pod_cidrs.iter().map(IpNet::to_string).collect();
        format!(
            "ip {ip} is outside node {}'s pod CIDRs ({})",
            node.name,
            nets.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidrs: &[&str]) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            spiffe_id: format!("spiffe://example.org/node/{name}"),
            allow: vec![],
            pod_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            joined_at: 0,
        }
    }

    #[test]
    fn accepts_networks_of_both_families() {
        let nets = parse(&["10.244.1.0/24".into(), "fd00:10:244:1::/64".into()]).unwrap();
        assert_eq!(nets.len(), 2);
    }

    #[test]
    fn refuses_malformed_wide_unaligned_and_overlapping_networks() {
        for (bad, says) in [
            ("10.244.1.0", "not a network"),
            (
                "10.244.1.7/24",
                "host bits are set; the network is 10.244.1.0/24",
            ),
            ("0.0.0.0/0", "wider than /8"),
            ("::/16", "wider than /32"),
        ] {
            let e = parse(&[bad.into()]).unwrap_err();
            assert!(e.message().contains(says), "{bad}: {}", e.message());
        }
        let e = parse(&["10.244.0.0/16".into(), "10.244.1.0/24".into()]).unwrap_err();
        assert!(e.message().contains("overlap"), "{}", e.message());
    }

    #[test]
    fn finds_the_other_node_that_owns_an_overlapping_network() {
        let nodes = [node("a", &["10.244.0.0/24"]), node("b", &["10.244.1.0/24"])];
        let wide: Vec<IpNet> = vec!["10.244.0.0/16".parse().unwrap()];
        let (other, theirs, _) = overlapping_node(&nodes, "b", &wide).unwrap();
        assert_eq!((other, theirs.to_string().as_str()), ("a", "10.244.0.0/24"));
        // A node re-joining with its own network does not conflict with itself.
        let own: Vec<IpNet> = vec!["10.244.1.0/24".parse().unwrap()];
        assert!(overlapping_node(&nodes, "b", &own).is_none());
    }

    #[test]
    fn an_address_outside_the_nodes_networks_is_named() {
        let b = node("b", &["10.244.1.0/24"]);
        assert!(outside(&b, "10.244.1.10".parse().unwrap()).is_none());
        let msg = outside(&b, "10.244.0.10".parse().unwrap()).unwrap();
        assert!(
            msg.contains("outside node b's pod CIDRs (10.244.1.0/24)"),
            "{msg}"
        );
        let msg = outside(&node("c", &[]), "10.244.0.10".parse().unwrap()).unwrap();
        assert!(msg.contains("--pod-cidr"), "{msg}");
    }
}
