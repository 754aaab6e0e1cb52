//! A cluster of nodes and pods made of network namespaces, veth pairs, bridges and cgroup v2
//! directories on this machine, for end-to-end tests, `cargo xtask demo` and benchmarks.
//!
//! ```text
//!  underlay netns: br0 ── fr..n0 ═══ eth0 10.255.0.1  node-0 netns  br0 10.244.0.1 ═══ pod-0-i eth0 10.244.0.(10+i)
//!                      └─ fr..n1 ═══ eth0 10.255.0.2  node-1 netns  br0 10.244.1.1 ═══ pod-1-i eth0 10.244.1.(10+i)
//! ```
//!
//! Each node routes the other nodes' pod CIDRs via their underlay addresses. Pods also get a
//! cgroup `<cgroup2>/<cluster>/<node>/<pod>`; programs started with [`Pod::command`] run in it
//! and in the pod's netns. Dropping the [`Cluster`] (also while a test panics) kills what runs
//! in it and removes it; [`cleanup_stale`] removes what a killed test run left. Needs root.
//!
//! ```no_run
//! let cluster = ferrule_tests::cluster::Cluster::builder().nodes(2).pods_per_node(2).build()?;
//! let server = cluster.pod(0, 0);
//! let reply = cluster.pod(1, 1).command("curl").arg(format!("http://{}/", server.ip)).output();
//! # Ok::<(), ferrule_tests::cluster::Error>(())
//! ```

mod addressing;
mod cgroup;
mod host;
mod naming;
mod setup;
mod teardown;
mod topology;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

pub use addressing::{Ipv4Cidr, MAX_NODES, MAX_PODS_PER_NODE};
pub use cgroup::cgroup2_root;
pub use naming::{BRIDGE, CLUSTER_PREFIX};
pub use teardown::cleanup_stale;
pub use topology::{Node, Pod, kubelet_pod_cgroup};

use topology::PodPlan;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "a cluster creates network namespaces, veth pairs and cgroups: run as root \
         (`sudo -E cargo xtask test`)"
    )]
    NotRoot,
    #[error(
        "{nodes} nodes with {pods_per_node} pods each do not fit the address plan \
         (1..={MAX_NODES} nodes, 1..={MAX_PODS_PER_NODE} pods per node)"
    )]
    Size { nodes: usize, pods_per_node: usize },
    #[error("no cgroup2 filesystem is mounted (see /proc/self/mountinfo)")]
    NoCgroup2,
    #[error("no unused cluster name after {0} random tries")]
    NoFreeName(usize),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

impl Error {
    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

type ServiceAccountFn = Box<dyn Fn(usize, usize) -> String>;

/// Shape of a cluster; see [`Cluster::builder`].
pub struct Builder {
    nodes: usize,
    pods_per_node: usize,
    namespace: String,
    service_account: ServiceAccountFn,
    kubelet_cgroups: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            nodes: 2,
            pods_per_node: 2,
            namespace: "default".into(),
            // One identity per pod, so that tests can tell workloads apart by their SPIFFE ID.
            service_account: Box::new(naming::pod_name),
            kubelet_cgroups: false,
        }
    }
}

impl Builder {
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    pub fn pods_per_node(mut self, pods: usize) -> Self {
        self.pods_per_node = pods;
        self
    }

    /// The Kubernetes namespace of every pod (default `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The service account of pod `(node, pod)` (default: the pod's name, e.g. `pod-0-1`).
    pub fn service_account(mut self, account: impl Fn(usize, usize) -> String + 'static) -> Self {
        self.service_account = Box::new(account);
        self
    }

    /// Pod cgroups where kubelet puts them, below each node's cgroup: even nodes use the
    /// systemd driver's layout, odd nodes the cgroupfs driver's (see [`kubelet_pod_cgroup`]).
    pub fn kubelet_cgroups(mut self) -> Self {
        self.kubelet_cgroups = true;
        self
    }

    /// Creates the cluster. On failure whatever was created is removed again.
    pub fn build(self) -> Result<Cluster, Error> {
        host::require_root()?;
        if !addressing::fits(self.nodes, self.pods_per_node) {
            return Err(Error::Size {
                nodes: self.nodes,
                pods_per_node: self.pods_per_node,
            });
        }
        let cgroup_root = cgroup2_root()?;
        let name = claim_name()?;
        // From here on, dropping `cluster` (also through `?`) removes what exists so far.
        let mut cluster = Cluster {
            cgroup: cgroup_root.join(&name),
            underlay_netns: naming::underlay_netns(&name),
            cgroup_root,
            name,
            nodes: Vec::new(),
            pods: Vec::new(),
        };
        setup::underlay(&cluster.underlay_netns)?;
        for index in 0..self.nodes {
            let node = Node::plan(&cluster.name, &cluster.cgroup, index);
            setup::node(&cluster.name, &cluster.underlay_netns, &node)?;
            let pods = self.pods_of(&cluster.name, &node)?;
            cluster.nodes.push(node);
            cluster.pods.push(pods);
        }
        setup::routes(&cluster.nodes)?;
        Ok(cluster)
    }

    fn pods_of(&self, cluster: &str, node: &Node) -> Result<Vec<Pod>, Error> {
        (0..self.pods_per_node)
            .map(|index| {
                let pod = PodPlan {
                    cluster,
                    node,
                    index,
                    uid: naming::uuid_v4().map_err(Error::io("reading /dev/urandom"))?,
                    namespace: self.namespace.clone(),
                    service_account: (self.service_account)(node.index, index),
                    kubelet_cgroups: self.kubelet_cgroups,
                }
                .into_pod();
                setup::pod(node, &pod)?;
                Ok(pod)
            })
            .collect()
    }
}

/// A random cluster name that no live cluster uses.
fn claim_name() -> Result<String, Error> {
    const TRIES: usize = 8;
    for _ in 0..TRIES {
        let name = naming::new_cluster_name().map_err(Error::io("reading /dev/urandom"))?;
        if teardown::claim(&name)? {
            return Ok(name);
        }
    }
    Err(Error::NoFreeName(TRIES))
}

/// Nodes and pods on this machine; removed when dropped.
pub struct Cluster {
    name: String,
    cgroup_root: PathBuf,
    cgroup: PathBuf,
    underlay_netns: String,
    nodes: Vec<Node>,
    pods: Vec<Vec<Pod>>,
}

impl Cluster {
    /// Two nodes with two pods each unless changed; `.build()` creates it.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// E.g. `fr0a1b2c`: the start of every namespace, link and cgroup of this cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, index: usize) -> &Node {
        self.nodes.get(index).unwrap_or_else(|| {
            panic!(
                "cluster {} has {} nodes, no node {index}",
                self.name,
                self.nodes.len()
            )
        })
    }

    /// Pod `index` on node `node`.
    pub fn pod(&self, node: usize, index: usize) -> &Pod {
        self.pods_on(node)
            .get(index)
            .unwrap_or_else(|| panic!("node {node} of cluster {} has no pod {index}", self.name))
    }

    pub fn pods_on(&self, node: usize) -> &[Pod] {
        &self.pods[self.node(node).index]
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().flatten()
    }

    /// The namespace holding the bridge that connects the nodes, e.g. to capture all of the
    /// traffic between nodes on its `br0`.
    pub fn underlay_netns(&self) -> &str {
        &self.underlay_netns
    }

    /// The cluster's cgroup, the parent of every node's.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Panicking here would abort a test that is already unwinding; a warning must do.
        if let Err(e) = teardown::remove(&self.name, &self.cgroup_root) {
            eprintln!("warning: removing cluster {}: {e}", self.name);
        }
    }
}
