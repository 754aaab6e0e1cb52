//! The kubelet's side of CNI for the harness: the node's primary conflist (which the agent
//! chains `ferrule-cni` into) and running the installed plugin as libcni runs a chained plugin,
//! with the `prevResult` the bridge plugin would have produced for the harness pod.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

use super::KubeMesh;
use crate::cluster::Node;

const PRIMARY: &str = "10-bridge.conflist";

/// A bridge conflist like a cluster's primary network's; never executed here (the harness
/// already wired the pods), but what the agent's installer edits.
pub fn write_primary_conflist(conf_dir: &Path, node: &Node) {
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "plugins": [{
            "type": "bridge",
            "bridge": "br0",
            "isGateway": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": node.pod_cidr.to_string()}]]}
        }]
    });
    let text = serde_json::to_string_pretty(&conflist).expect("JSON");
    std::fs::write(conf_dir.join(PRIMARY), text).expect("writing the primary conflist");
}

/// One plugin run: exit status, stdout (the result or a CNI error) and stderr.
#[derive(Debug)]
pub struct CniOutcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CniOutcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("plugin stdout is not JSON ({e}): {self:?}"))
    }
}

/// The installed conflist's `ferrule-cni` entry, as libcni hands it to the plugin.
fn plugin_conf(mesh: &KubeMesh, node: usize, prev: Value) -> Value {
    let path = mesh.cni_conf_dir(node).join(PRIMARY);
    let text = std::fs::read_to_string(&path).expect("reading the conflist");
    let conflist: Value = serde_json::from_str(&text).expect("conflist JSON");
    let mut plugin = conflist["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["type"] == "ferrule-cni"))
        .unwrap_or_else(|| panic!("ferrule-cni is not chained in {}: {text}", path.display()))
        .clone();
    plugin["name"] = conflist["name"].clone();
    plugin["cniVersion"] = conflist["cniVersion"].clone();
    plugin["prevResult"] = prev;
    plugin
}

pub fn run(mesh: &KubeMesh, node: usize, pod: usize, command: &str) -> CniOutcome {
    let p = mesh.pod(node, pod);
    let n = mesh.node(node);
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": p.netns}],
        "ips": [{"address": format!("{}/{}", p.ip, n.pod_cidr.prefix_len), "gateway": n.gateway.to_string(), "interface": 0}],
    });
    let conf = serde_json::to_vec(&plugin_conf(mesh, node, prev)).expect("JSON");
    let plugin = mesh.cni_bin_dir(node).join("ferrule-cni");
    // From the node's netns, like the runtime: the plugin may ask the API server over the underlay.
    let mut child = n
        .command(&plugin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("sandbox-{}", p.uid))
        .env("CNI_NETNS", &p.netns)
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID=sandbox;K8S_POD_UID={}",
                p.namespace, p.name, p.uid
            ),
        )
        .env("CNI_PATH", mesh.cni_bin_dir(node))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", plugin.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&conf)
        .expect("writing the plugin's stdin");
    let out = child.wait_with_output().expect("plugin output");
    CniOutcome {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
