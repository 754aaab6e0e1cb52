//! A whole mesh on one machine: a [`Cluster`] of namespace nodes and pods, the control plane in
//! node 0's netns, and one real `ferrule-agent` per node, joined with tokens made by the real
//! `ferrule` CLI. Pods are enrolled through each agent's enrollment API with curl.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crate::cluster::{Cluster, Node, Pod};
use crate::control_plane::ControlPlaneFixture;
use crate::etcd::EtcdCluster;
use crate::process::{Child, binary};

pub const TRUST_DOMAIN: &str = "example.org";
pub const NAMESPACE: &str = "shop";
const CP_PORT: u16 = 8443;

pub struct Mesh {
    /// Extra environment for every agent (e.g. `FERRULE_NON_MESH=deny`).
    agent_env: Vec<(String, String)>,
    pub cluster: Cluster,
    pub cp: ControlPlaneFixture,
    /// More replicas of `cp` sharing `etcd` (see [`Mesh::start_ha`]); empty otherwise.
    pub replicas: Vec<ControlPlaneFixture>,
    /// Dropped after the replicas (fields drop in order).
    pub etcd: Option<EtcdCluster>,
    agents: Vec<Option<Child>>,
    pub work: tempfile::TempDir,
}

impl Mesh {
    /// Builds the cluster, starts the control plane and one agent per node.
    pub fn start(nodes: usize, pods_per_node: usize) -> Self {
        Self::start_with(nodes, pods_per_node, &[])
    }

    /// Like [`Self::start`], with extra environment for the agents.
    pub fn start_with(nodes: usize, pods_per_node: usize, agent_env: &[(&str, &str)]) -> Self {
        let cluster = build_cluster(nodes, pods_per_node);
        let addr = SocketAddr::from((cluster.node(0).underlay_ip, CP_PORT));
        let mut cp = ControlPlaneFixture::listening_on(TRUST_DOMAIN, addr);
        cp.start_with(cluster.node(0).command(binary("ferrule-control-plane")));
        let mut mesh = Self {
            agent_env: agent_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            agents: (0..nodes).map(|_| None).collect(),
            cluster,
            cp,
            replicas: Vec::new(),
            etcd: None,
            work: tempfile::tempdir().expect("temporary directory"),
        };
        mesh.start_agents();
        mesh
    }

    /// Like [`Self::start`], with `replicas` control-plane replicas in node 0's netns sharing a
    /// 3-member etcd cluster (also in node 0's netns); every agent knows every replica.
    pub fn start_ha(nodes: usize, pods_per_node: usize, replicas: usize) -> Self {
        let cluster = build_cluster(nodes, pods_per_node);
        let node0 = cluster.node(0).clone();
        let etcd = EtcdCluster::start_with(3, Box::new(move |program| node0.command(program)));
        let addr = SocketAddr::from((cluster.node(0).underlay_ip, CP_PORT));
        let first = ControlPlaneFixture::listening_on(TRUST_DOMAIN, addr);
        let mut all: Vec<ControlPlaneFixture> = (1..replicas).map(|_| first.replica()).collect();
        all.insert(0, first);
        for cp in &mut all {
            cp.use_etcd(&etcd.endpoints(), "/ferrule/");
            cp.start_with(cluster.node(0).command(binary("ferrule-control-plane")));
        }
        let cp = all.remove(0);
        let mut mesh = Self {
            agent_env: Vec::new(),
            agents: (0..nodes).map(|_| None).collect(),
            cluster,
            cp,
            replicas: all,
            etcd: Some(etcd),
            work: tempfile::tempdir().expect("temporary directory"),
        };
        mesh.start_agents();
        mesh
    }

    /// Every replica's gRPC address, comma-separated, as agents are configured.
    pub fn control_plane_addrs(&self) -> String {
        std::iter::once(&self.cp)
            .chain(&self.replicas)
            .map(|cp| cp.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start_agents(&mut self) {
        for node in 0..self.agents.len() {
            let token = self.join_token(node);
            self.start_agent(node, Some(&token));
        }
    }

    /// `ferrule ARGS` as the operator, next to the control plane (node 0's netns).
    pub fn ferrule(&self, args: &[&str]) -> Output {
        self.cluster
            .node(0)
            .command(binary("ferrule"))
            .args(args)
            .env("FERRULE_CA_DIR", self.cp.layout.dir())
            .env("FERRULE_CONTROL_PLANE", self.cp.addr.to_string())
            .output()
            .expect("running ferrule")
    }

    fn join_token(&self, node: usize) -> String {
        let allow = format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/*");
        let node = self.cluster.node(node);
        let pod_cidr = node.pod_cidr.to_string();
        let out = self.ferrule(&[
            "node",
            "token",
            "create",
            "--node",
            &node.name,
            "--allow",
            &allow,
            "--pod-cidr",
            &pod_cidr,
            "--ttl",
            "10m",
        ]);
        assert!(
            out.status.success(),
            "token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    pub fn node(&self, node: usize) -> &Node {
        self.cluster.node(node)
    }

    pub fn pod(&self, node: usize, pod: usize) -> &Pod {
        self.cluster.pod(node, pod)
    }

    pub fn agent_config(&self, node: usize) -> PathBuf {
        let name = &self.cluster.node(node).name;
        let path = self.work.path().join(format!("agent-{name}.yaml"));
        if !path.exists() {
            let control_plane = self.control_plane_addrs();
            self.cp
                .agent_config_for(self.work.path(), name, &control_plane);
        }
        path
    }

    pub fn enroll_socket(&self, node: usize) -> PathBuf {
        let name = &self.cluster.node(node).name;
        self.work.path().join(format!("agent-{name}/agent.sock"))
    }

    /// Starts node `node`'s agent (in the node's netns) and waits for its enrollment API.
    pub fn start_agent(&mut self, node: usize, token: Option<&str>) -> &Child {
        let config = self.agent_config(node);
        let mut command = self.cluster.node(node).command(binary("ferrule-agent"));
        command.arg("--config").arg(&config).env(
            "RUST_LOG",
            std::env::var("FERRULE_TEST_AGENT_LOG").unwrap_or_else(|_| "info".into()),
        );
        if let Some(token) = token {
            command.env("FERRULE_JOIN_TOKEN", token);
        }
        command.envs(self.agent_env.iter().map(|(k, v)| (k, v)));
        let child = Child::spawn(&mut command);
        child.wait_for_line("enrollment API listening", Duration::from_secs(30));
        self.agents[node].insert(child)
    }

    /// Starts `node`'s agent after a plain stop: with a new join token, since the node key
    /// lived only in the stopped agent's memory.
    pub fn restart_agent(&mut self, node: usize) -> &Child {
        let token = self.join_token(node);
        self.start_agent(node, Some(&token))
    }

    /// Starts a new agent on `node` next to the running one (what a DaemonSet rolling update
    /// with `maxSurge` does), with extra environment; waits until it took over. Returns the
    /// previous agent, which now drains and exits on its own.
    pub fn replace_agent(&mut self, node: usize, env: &[(&str, &str)]) -> Child {
        let config = self.agent_config(node);
        let mut command = self.cluster.node(node).command(binary("ferrule-agent"));
        command.arg("--config").arg(&config).env(
            "RUST_LOG",
            std::env::var("FERRULE_TEST_AGENT_LOG").unwrap_or_else(|_| "info".into()),
        );
        command.envs(self.agent_env.iter().map(|(k, v)| (k, v)));
        command.envs(env.iter().copied());
        let child = Child::spawn(&mut command);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !child.output().contains("took over from the previous agent") {
            assert!(
                std::time::Instant::now() < deadline,
                "the new agent did not take over within 60s\nnew:\n{}\nold:\n{}",
                child.output(),
                self.agent(node).output()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        self.agents[node]
            .replace(child)
            .expect("an agent was running")
    }

    /// Sends `node`'s agent SIGTERM (a stop without a successor) and hands it over, draining.
    pub fn signal_agent(&mut self, node: usize) -> Child {
        let child = self.agents[node].take().expect("agent running");
        child.terminate();
        child
    }

    /// Stops `node`'s agent gracefully (SIGTERM) and waits for it to exit; returns its output.
    pub fn terminate_agent(&mut self, node: usize, timeout: Duration) -> String {
        let mut child = self.signal_agent(node);
        let code = child.wait_exit(timeout);
        assert_eq!(
            code,
            Some(0),
            "agent exit after SIGTERM:\n{}",
            child.output()
        );
        child.output()
    }

    pub fn stop_agent(&mut self, node: usize) -> Option<String> {
        self.agents[node].take().map(|mut child| {
            child.kill();
            child.output()
        })
    }

    pub fn agent(&self, node: usize) -> &Child {
        self.agents[node].as_ref().expect("agent running")
    }

    /// Enrolls pod `(node, pod)` with its agent; returns the HTTP status and body.
    pub fn enroll(&self, node: usize, pod: usize, mode: &str) -> (u16, String) {
        let p = self.cluster.pod(node, pod);
        let spec = format!(
            r#"{{"uid":"{}","name":"{}","namespace":"{}","service_account":"{}","ips":["{}"],"netns":"{}","cgroup":"{}","mode":"{mode}"}}"#,
            p.uid,
            p.name,
            p.namespace,
            p.service_account,
            p.ip,
            p.netns.display(),
            p.cgroup.display()
        );
        self.api(node, "POST", "/v1/pods", Some(&spec))
    }

    pub fn unenroll(&self, node: usize, pod: usize) -> (u16, String) {
        let uid = self.cluster.pod(node, pod).uid.clone();
        self.api(node, "DELETE", &format!("/v1/pods/{uid}"), None)
    }

    fn api(&self, node: usize, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        ferrule_node_agent::enroll::testing::call(&self.enroll_socket(node), method, path, body)
    }

    /// Enrolls every pod, asserting success.
    pub fn enroll_all(&self, mode: &str) {
        for node in 0..self.cluster.nodes().len() {
            for pod in 0..self.cluster.pods_on(node).len() {
                let (status, body) = self.enroll(node, pod, mode);
                assert_eq!(
                    status,
                    201,
                    "enrolling pod ({node},{pod}): {body}\nagent log:\n{}",
                    self.agent(node).output()
                );
            }
        }
    }
}

impl Mesh {
    /// The agent's view of its pods (`GET /v1/pods`), as JSON text.
    pub fn pods_json(&self, node: usize) -> String {
        self.api(node, "GET", "/v1/pods", None).1
    }

    /// The agent's `/metrics` address inside its node's netns (it binds port 0 in tests).
    pub fn metrics_addr(&self, node: usize) -> SocketAddr {
        self.agent(node)
            .logged_address("metrics listening", Duration::from_secs(10))
    }

    /// The agent's metrics, scraped with curl inside its node's netns.
    pub fn metrics(&self, node: usize) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr(node));
        let out = self
            .node(node)
            .command("curl")
            .args(["-sS", "--fail", "--max-time", "5", &url])
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "scraping {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The agent's access log so far: one JSON object per closed connection.
    pub fn access_log(&self, node: usize) -> Vec<serde_json::Value> {
        let name = &self.cluster.node(node).name;
        let path = self.work.path().join(format!("agent-{name}/access.log"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// Waits for an access-log entry on `node` for which `matches` holds.
    pub fn wait_for_access(
        &self,
        node: usize,
        timeout: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(entry) = self.access_log(node).into_iter().find(|e| matches(e)) {
                return entry;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no matching access-log entry on node {node} within {timeout:?}: {:?}",
                self.access_log(node)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's applied configuration and sync counters (`GET /v1/config`).
    pub fn config_status(&self, node: usize) -> serde_json::Value {
        let (status, body) = self.api(node, "GET", "/v1/config", None);
        assert_eq!(status, 200, "GET /v1/config on node {node}: {body}");
        serde_json::from_str(&body).expect("config status is JSON")
    }

    /// Waits until every agent has applied configuration `version` (or later).
    pub fn wait_for_version(&self, version: u64, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        for node in 0..self.cluster.nodes().len() {
            loop {
                let applied = self.config_status(node)["version"].as_u64().unwrap_or(0);
                if applied >= version {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "node {node} applied version {applied}, not {version}, within {timeout:?}\nagent log:\n{}",
                    self.agent(node).output()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn stop_control_plane(&mut self) {
        self.cp.stop();
    }

    pub fn start_control_plane(&mut self) {
        let command = self
            .cluster
            .node(0)
            .command(binary("ferrule-control-plane"));
        self.cp.start_with(command);
    }
}

/// The namespace cluster of a mesh, after clearing leftovers of killed runs (their owner
/// process is gone; live clusters of parallel tests stay).
fn build_cluster(nodes: usize, pods_per_node: usize) -> Cluster {
    if let Err(e) = crate::cluster::cleanup_stale(crate::cluster::CLUSTER_PREFIX) {
        eprintln!("cleaning up stale test clusters: {e}");
    }
    Cluster::builder()
        .nodes(nodes)
        .pods_per_node(pods_per_node)
        .namespace(NAMESPACE)
        .build()
        .expect("building the test cluster")
}
