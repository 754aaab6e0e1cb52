//! The nodes and pods of a cluster, and how to run programs inside them.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::addressing::{self, Ipv4Cidr};
use super::host::NETNS_DIR;
use super::naming;
use crate::process::Child;

/// The wrapper behind `Pod::command` and `Node::command`. The shell moves itself into the cgroup
/// first, then becomes nsenter, which joins the network namespace (setns keeps the cgroup) and
/// execs the program under the same pid. `ip netns exec` would also remount /sys and hide the
/// cgroup2 mount, which the agent needs. The paths come in as arguments, never spliced into
/// the script; if joining the cgroup fails the program does not run at all.
const ENTER: &str =
    r#"echo $$ > "$1/cgroup.procs" && netns=$2 && shift 2 && exec nsenter --net="$netns" -- "$@""#;

fn enter(label: &str, cgroup: &Path, netns: &Path, program: &OsStr) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(ENTER)
        .arg(label)
        .arg(cgroup)
        .arg(netns)
        .arg(program);
    command
}

/// A node: a network namespace with a bridge for its pods and a link to the underlay.
#[derive(Clone, Debug)]
pub struct Node {
    pub index: usize,
    /// E.g. `node-0`: what the agent calls itself (`spiffe://<td>/node/<name>`).
    pub name: String,
    /// E.g. `fr0a1b2c-node-0`, for `ip -n`.
    pub netns_name: String,
    /// `/run/netns/<netns_name>`, for nsenter and setns.
    pub netns: PathBuf,
    pub underlay_ip: Ipv4Addr,
    /// The node's interface towards the other nodes, to capture the wire with tcpdump.
    pub underlay_if: String,
    pub pod_cidr: Ipv4Cidr,
    /// The address of the node's bridge, the pods' default gateway.
    pub gateway: Ipv4Addr,
    /// The parent cgroup of this node's pods.
    pub cgroup: PathBuf,
    /// Where `Node::command` puts node processes: not under `cgroup`, so programs attached there
    /// do not capture them.
    pub system_cgroup: PathBuf,
}

impl Node {
    pub(super) fn plan(cluster: &str, cluster_cgroup: &Path, index: usize) -> Self {
        let name = naming::node_name(index);
        let netns_name = naming::node_netns(cluster, index);
        Self {
            index,
            netns: Path::new(NETNS_DIR).join(&netns_name),
            netns_name,
            underlay_ip: addressing::underlay_ip(index),
            underlay_if: naming::NODE_UNDERLAY_IF.into(),
            pod_cidr: addressing::pod_cidr(index),
            gateway: addressing::gateway(index),
            cgroup: cluster_cgroup.join(&name),
            system_cgroup: cluster_cgroup.join(naming::node_system_cgroup(index)),
            name,
        }
    }

    /// `program` (add arguments to the result) in this node's network namespace and its system
    /// cgroup, with /sys as on the host: for agents and captures.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        enter(
            &self.name,
            &self.system_cgroup,
            &self.netns,
            program.as_ref(),
        )
    }

    /// Starts `program args..` like `command`; killed when the returned `Child` is dropped.
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Child {
        Child::spawn(self.command(program).args(args))
    }
}

/// A pod: a network namespace and a cgroup, as a CNI plugin would set them up.
#[derive(Clone, Debug)]
pub struct Pod {
    /// A random UUID, like a Kubernetes pod uid.
    pub uid: String,
    /// E.g. `pod-1-0` (node 1, pod 0).
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub ip: Ipv4Addr,
    /// The index of the node it runs on.
    pub node: usize,
    pub netns_name: String,
    pub netns: PathBuf,
    pub cgroup: PathBuf,
    /// The node-netns end of the pod's veth pair, on the node's bridge.
    pub host_if: String,
}

impl Pod {
    /// `program` (add arguments to the result) inside this pod: its cgroup, then its network
    /// namespace, so the process is subject to whatever is attached to the pod's cgroup.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        enter(&self.name, &self.cgroup, &self.netns, program.as_ref())
    }

    /// Starts `program args..` like `command`; killed when the returned `Child` is dropped.
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Child {
        Child::spawn(self.command(program).args(args))
    }
}

/// What the builder decides about each pod before it exists.
pub(super) struct PodPlan<'a> {
    pub cluster: &'a str,
    pub node: &'a Node,
    pub index: usize,
    pub uid: String,
    pub namespace: String,
    pub service_account: String,
    pub kubelet_cgroups: bool,
}

/// A besteffort pod's cgroup relative to the cgroup root, as kubelet makes it with the systemd
/// driver (`systemd: true`) or the cgroupfs driver.
pub fn kubelet_pod_cgroup(uid: &str, systemd: bool) -> PathBuf {
    match systemd {
        true => PathBuf::from(format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            uid.replace('-', "_")
        )),
        false => PathBuf::from(format!("kubepods/besteffort/pod{uid}")),
    }
}

impl PodPlan<'_> {
    pub(super) fn into_pod(self) -> Pod {
        let node = self.node.index;
        let netns_name = naming::pod_netns(self.cluster, node, self.index);
        let name = naming::pod_name(node, self.index);
        let cgroup = match self.kubelet_cgroups {
            true => self
                .node
                .cgroup
                .join(kubelet_pod_cgroup(&self.uid, node.is_multiple_of(2))),
            false => self.node.cgroup.join(&name),
        };
        Pod {
            uid: self.uid,
            cgroup,
            name,
            namespace: self.namespace,
            service_account: self.service_account,
            ip: addressing::pod_ip(node, self.index),
            node,
            netns: Path::new(NETNS_DIR).join(&netns_name),
            netns_name,
            host_if: naming::pod_host_if(self.cluster, node, self.index),
        }
    }
}
