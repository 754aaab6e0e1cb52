//! A Kubernetes-mode mesh on one machine: the [`Cluster`] harness as nodes and pods (pod cgroups
//! in kubelet's layouts), the in-process API server double in node 0's netns, the control plane
//! in Kubernetes mode beside it, and one real agent per node in Kubernetes mode. The test plays
//! the kubelet: it writes Pod objects, runs the installed `ferrule-cni` the way libcni runs a
//! chained plugin (env, stdin with `prevResult`), and starts apps in the pods.

mod cni;
mod objects;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrule_kube_double::KubeDouble;

use crate::cluster::{Cluster, Node, Pod};
use crate::control_plane::ControlPlaneFixture;
use crate::process::{Child, binary};

pub use cni::CniOutcome;

pub const TRUST_DOMAIN: &str = "example.org";
/// The meshed namespace of every harness pod (label `ferrule.io/mode=strict`).
pub const NAMESPACE: &str = "shop";
pub const SYSTEM_NAMESPACE: &str = "ferrule-system";
const CP_PORT: u16 = 8443;
const API_PORT: u16 = 6443;

pub struct KubeMesh {
    pub cluster: Cluster,
    pub api: KubeDouble,
    pub cp: ControlPlaneFixture,
    agents: Vec<Option<Child>>,
    pub work: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// Runs the API double's server.
    runtime: tokio::runtime::Runtime,
}

impl KubeMesh {
    /// Nodes and pods (Pod objects written, no sandbox enrolled yet), the API double and the
    /// control plane; agents are started with [`Self::start_agent`].
    pub fn new(nodes: usize, pods_per_node: usize) -> Self {
        if let Err(e) = crate::cluster::cleanup_stale(crate::cluster::CLUSTER_PREFIX) {
            eprintln!("cleaning up stale test clusters: {e}");
        }
        let cluster = Cluster::builder()
            .nodes(nodes)
            .pods_per_node(pods_per_node)
            .namespace(NAMESPACE)
            .kubelet_cgroups()
            .build()
            .expect("building the test cluster");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let api = KubeDouble::new();
        let api_addr = SocketAddr::from((cluster.node(0).underlay_ip, API_PORT));
        serve_in_netns(&runtime, &api, &cluster.node(0).netns, api_addr);
        let work = tempfile::tempdir().expect("temporary directory");
        let kubeconfig = work.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, &api.admin_token())
            .expect("writing the kubeconfig");
        objects::populate(&api, &cluster);
        let cp_addr = SocketAddr::from((cluster.node(0).underlay_ip, CP_PORT));
        let mut cp = ControlPlaneFixture::listening_on(TRUST_DOMAIN, cp_addr);
        append(
            &cp.config_path,
            &format!(
                "kubernetes:\n  namespace: {SYSTEM_NAMESPACE}\n  agent_service_account: ferrule-agent\n  audience: ferrule\n"
            ),
        );
        let mut command = cluster.node(0).command(binary("ferrule-control-plane"));
        command.env("KUBECONFIG", &kubeconfig);
        cp.start_with(command);
        Self {
            agents: (0..nodes).map(|_| None).collect(),
            cluster,
            api,
            cp,
            work,
            kubeconfig,
            runtime,
        }
    }

    pub fn node(&self, node: usize) -> &Node {
        self.cluster.node(node)
    }

    pub fn pod(&self, node: usize, pod: usize) -> &Pod {
        self.cluster.pod(node, pod)
    }

    fn node_dir(&self, node: usize) -> PathBuf {
        self.work.path().join(&self.node(node).name)
    }

    pub fn enroll_socket(&self, node: usize) -> PathBuf {
        let name = &self.node(node).name;
        self.work.path().join(format!("agent-{name}/agent.sock"))
    }

    /// The node's CNI configuration directory (a bridge conflist; the agent chains itself in).
    pub fn cni_conf_dir(&self, node: usize) -> PathBuf {
        self.node_dir(node).join("net.d")
    }

    pub fn cni_bin_dir(&self, node: usize) -> PathBuf {
        self.node_dir(node).join("bin")
    }

    /// The agent's config file (written when the agent first starts).
    pub fn agent_config_path(&self, node: usize) -> PathBuf {
        let name = &self.node(node).name;
        self.work.path().join(format!("agent-{name}.yaml"))
    }

    /// The API double's kubeconfig (admin), what the agents use.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The agent's config: the fixture's standalone one plus a `kubernetes:` section whose paths
    /// point into this test's cluster and work directory.
    fn agent_config(&self, node: usize) -> PathBuf {
        let path = self
            .cp
            .agent_config(self.work.path(), &self.node(node).name);
        let token = self.node_dir(node).join("token");
        let conf_dir = self.cni_conf_dir(node);
        if !conf_dir.exists() {
            // Once: a restarted agent finds the chain it installed, as on a real node.
            std::fs::create_dir_all(&conf_dir).expect("CNI conf dir");
            cni::write_primary_conflist(&conf_dir, self.node(node));
        }
        append(
            &path,
            &format!(
                "kubernetes:\n  cgroup_root: {}\n  proc_root: /proc\n  token_path: {}\n  \
                 readiness_listen: 127.0.0.1:0\n  cni:\n    bin_dir: {}\n    conf_dir: {}\n    \
                 host_conf_dir: {}\n    plugin: {}\n    socket: {}\n",
                self.node(node).cgroup.display(),
                token.display(),
                self.cni_bin_dir(node).display(),
                conf_dir.display(),
                conf_dir.display(),
                binary("ferrule-cni").display(),
                self.enroll_socket(node).display(),
            ),
        );
        std::fs::write(&token, objects::agent_token(&self.api, self.node(node)))
            .expect("writing the agent's token");
        path
    }

    /// Starts node `node`'s agent in Kubernetes mode and waits for its enrollment API.
    pub fn start_agent(&mut self, node: usize) -> &Child {
        let child = Child::spawn(&mut self.agent_command(node));
        child.wait_for_line("enrollment API listening", Duration::from_secs(30));
        self.agents[node].insert(child)
    }

    /// Starts a second agent on `node` next to the running one (a DaemonSet rolling update
    /// with `maxSurge`) and waits until it took over; returns the previous one, which drains.
    pub fn replace_agent(&mut self, node: usize) -> Child {
        let child = Child::spawn(&mut self.agent_command(node));
        child.wait_for_line("took over from the previous agent", Duration::from_secs(60));
        self.agents[node]
            .replace(child)
            .expect("an agent was running")
    }

    fn agent_command(&self, node: usize) -> std::process::Command {
        let config = self.agent_config(node);
        let mut command = self.node(node).command(binary("ferrule-agent"));
        command
            .arg("--config")
            .arg(&config)
            .env("KUBECONFIG", &self.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("FERRULE_TEST_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            );
        command
    }

    pub fn stop_agent(&mut self, node: usize) {
        if let Some(mut child) = self.agents[node].take() {
            child.kill();
        }
    }

    pub fn agent(&self, node: usize) -> &Child {
        self.agents[node].as_ref().expect("agent running")
    }

    /// The agent's enrolled pods (`GET /v1/pods`) as JSON.
    pub fn enrolled(&self, node: usize) -> serde_json::Value {
        let (status, body) = ferrule_node_agent::enroll::testing::call(
            &self.enroll_socket(node),
            "GET",
            "/v1/pods",
            None,
        );
        assert_eq!(status, 200, "GET /v1/pods: {body}");
        serde_json::from_str(&body).expect("pod list is JSON")
    }

    /// The SPIFFE ID the agent of `node` enrolled `uid` with, if enrolled.
    pub fn enrolled_id(&self, node: usize, uid: &str) -> Option<String> {
        let pods = self.enrolled(node);
        pods.as_array()?
            .iter()
            .find(|p| p["uid"] == uid)
            .map(|p| p["spiffe_id"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until `check` holds, or panics with `what` and the agent's log.
    pub fn wait_until(&self, node: usize, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nagent log:\n{}",
                self.agent(node).output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the installed plugin's ADD for pod `(node, pod)` as the runtime would.
    pub fn cni_add(&self, node: usize, pod: usize) -> CniOutcome {
        cni::run(self, node, pod, "ADD")
    }

    pub fn cni_del(&self, node: usize, pod: usize) -> CniOutcome {
        cni::run(self, node, pod, "DEL")
    }

    /// Deletes pod `(node, pod)`'s Pod object, as the API server does after kubelet confirms.
    pub fn delete_pod_object(&self, node: usize, pod: usize) {
        objects::delete_pod(&self.api, self.pod(node, pod));
    }

    /// Adds a Running Pod object `name` (service account `sa`) with the address of pod
    /// `(node, pod)`, on the same node.
    pub fn put_pod_sharing_address(&self, node: usize, pod: usize, name: &str, sa: &str) {
        let node_name = &self.node(node).name;
        objects::put_pod_sharing_address(&self.api, node_name, self.pod(node, pod), name, sa);
    }

    /// Deletes the Pod object `name` of the test namespace.
    pub fn delete_pod_named(&self, name: &str) {
        objects::delete_pod_named(&self.api, NAMESPACE, name);
    }

    /// Sets an annotation on pod `(node, pod)`'s Pod object.
    pub fn annotate_pod(&self, node: usize, pod: usize, key: &str, value: &str) {
        objects::annotate_pod(&self.api, self.pod(node, pod), key, value);
    }

    /// Runs `f` inside the runtime that serves the API double.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

impl Drop for KubeMesh {
    fn drop(&mut self) {
        for node in 0..self.agents.len() {
            self.stop_agent(node);
        }
        self.cp.stop();
        self.api.shutdown();
    }
}

/// Serves `api` on `addr` inside the network namespace at `netns` (the nodes reach it over the
/// underlay, as they would reach an API server).
fn serve_in_netns(
    runtime: &tokio::runtime::Runtime,
    api: &KubeDouble,
    netns: &Path,
    addr: SocketAddr,
) {
    let _entered = runtime.enter();
    let ns = ferrule_node_agent::netns::Netns::open(netns).expect("opening node 0's netns");
    let listener = ns
        .tcp_listener(addr)
        .and_then(|l| l.into_std())
        .expect("binding the API double in node 0's netns");
    api.serve(listener).expect("serving the API double");
}

fn append(path: &Path, text: &str) {
    let mut config = std::fs::read_to_string(path).expect("reading config");
    config.push_str(text);
    std::fs::write(path, config).expect("writing config");
}
