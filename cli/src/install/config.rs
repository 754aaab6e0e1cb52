//! The agent's and the control plane's configuration files, in ConfigMaps. Same fields as on a
//! plain host (deploy/examples/*.yaml), plus the `kubernetes:` section that switches on
//! Kubernetes mode.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::meta::{self, AGENT, CONTROL_PLANE, GRPC_PORT, METRICS_PORT, PUBLIC_PORT};
use super::values::Values;

pub const AGENT_FILE: &str = "agent.yaml";
pub const CONTROL_PLANE_FILE: &str = "control-plane.yaml";

/// Where the agent reads the trust bundle (the trust-bundle ConfigMap).
pub const BUNDLE_DIR: &str = "/etc/ferrule/bundle";
/// Where the control plane reads the CA Secret.
pub const CA_DIR: &str = "/etc/ferrule/ca";
/// The control plane's store (an emptyDir; see control_plane).
pub const DATA_DIR: &str = "/var/lib/ferrule";
/// The agent's enroll socket, as seen from the host and from the agent (same path).
pub const SOCKET_DIR: &str = "/var/run/ferrule";
pub const TOKEN_DIR: &str = "/var/run/secrets/ferrule";
pub const TOKEN_FILE: &str = "token";

pub fn agent_config(values: &Values) -> String {
    format!(
        "\
# ferrule-agent in Kubernetes mode. The node name comes from FERRULE_NODE_NAME (downward API);
# the node attests with its projected service account token instead of a join token.
control_plane: {control_plane}
trust_domain: {trust_domain}
bundle: {BUNDLE_DIR}/bundle.pem   # authenticates the control plane on first contact
enroll_socket: {SOCKET_DIR}/agent.sock
capture:
  pin_dir: /sys/fs/bpf/ferrule    # programs, maps and links outlive the agent here
non_mesh: passthrough
metrics_listen: 127.0.0.1:15020   # loopback of the node; metrics name identities
access_log: stdout
kubernetes:
  default_mode: {mode}             # for namespaces labelled ferrule.io/mode=enabled
  cgroup_root: /host/sys/fs/cgroup # host cgroup2 root (kubelet's kubepods tree below it)
  proc_root: /host/proc
  token_path: {TOKEN_DIR}/{TOKEN_FILE}
  readiness_listen: 0.0.0.0:{ready}
  cni:
    bin_dir: /host/opt/cni/bin
    conf_dir: /host/etc/cni/net.d
    plugin: /usr/local/bin/ferrule-cni # copied into bin_dir
    socket: {SOCKET_DIR}/agent.sock # as seen from the host (goes into the plugin config)
",
        control_plane = meta::control_plane_address(values),
        trust_domain = values.trust_domain,
        mode = values.default_mode.as_str(),
        ready = meta::READINESS_PORT,
    )
}

pub fn control_plane_config(values: &Values) -> String {
    let namespace = &values.namespace;
    format!(
        "\
# ferrule-control-plane in Kubernetes mode: nodes attest with TokenReview, workloads come from
# Pod objects and policies from AuthorizationPolicy objects.
trust_domain: {trust_domain}
listen: 0.0.0.0:{GRPC_PORT}             # gRPC over mutual TLS
public_listen: 0.0.0.0:{PUBLIC_PORT}      # HTTPS: /crl.pem, /bundle.pem (readiness probe)
metrics_listen: 0.0.0.0:{METRICS_PORT}     # scraped through the Service
data_dir: {DATA_DIR}
ca:                               # the CA Secret, from `ferrule ca init`
  chain: {CA_DIR}/chain.pem
  bundle: {CA_DIR}/bundle.pem
  offline_crls: {CA_DIR}/ca-crls.pem
  signer:
    file:
      key: {CA_DIR}/issuing.key
server:
  dns_names:
    - {CONTROL_PLANE}
    - {CONTROL_PLANE}.{namespace}
    - {CONTROL_PLANE}.{namespace}.svc
    - {CONTROL_PLANE}.{namespace}.svc.cluster.local
kubernetes:
  namespace: {namespace}           # its own namespace: root for mesh-wide policies
  agent_service_account: {AGENT} # only this SA (in `namespace`) may attest as a node
  audience: ferrule
",
        trust_domain = values.trust_domain,
    )
}

/// A ConfigMap named after its component, holding one file.
pub fn config_map(component: &str, file: &str, text: String, values: &Values) -> ConfigMap {
    ConfigMap {
        metadata: meta::namespaced(component, component, values),
        data: Some(BTreeMap::from([(file.to_owned(), text)])),
        ..ConfigMap::default()
    }
}

/// Pod template annotation value: a changed configuration rolls the pods on `kubectl apply`.
pub fn checksum(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
