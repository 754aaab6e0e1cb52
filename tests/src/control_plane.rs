//! A control plane with its own CA in a temporary directory, run as the real binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferrule_identity::ca::{self, CaInitOptions, CaLayout};
use ferrule_identity::tls::{self, CertSlot, ExpectedServer, SpiffeServerVerifier};
use ferrule_identity::{SharedBundle, SpiffeId, TrustBundle, TrustDomain};
use ferrule_proto::v1::admin_client::AdminClient;
use tonic::transport::Channel;

use crate::process::{Child, binary, free_port};

pub struct ControlPlaneFixture {
    pub dir: tempfile::TempDir,
    pub layout: CaLayout,
    pub trust_domain: TrustDomain,
    pub addr: SocketAddr,
    /// The public HTTPS endpoint (CRL, trust bundle), on the same IP.
    pub public_addr: SocketAddr,
    /// `/metrics`, on the same IP.
    pub metrics_addr: SocketAddr,
    pub config_path: PathBuf,
    process: Option<Child>,
    /// Pin directories of the agents configured for this control plane,
    /// removed on drop (recorded now: the config files may be gone by then).
    agent_leftovers: std::sync::Mutex<Vec<PathBuf>>,
}

impl ControlPlaneFixture {
    /// A fresh CA for `trust_domain` and a config; the control plane is not started yet.
    pub fn new(trust_domain: &str) -> Self {
        Self::listening_on(trust_domain, free_port())
    }

    /// Like [`Self::new`], listening on `addr` (e.g. a node's address inside a test cluster).
    pub fn listening_on(trust_domain: &str, addr: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let layout = CaLayout::new(dir.path().join("ca"));
        let td = TrustDomain::new(trust_domain).expect("trust domain");
        ca::init(&layout, &CaInitOptions::new(td.clone())).expect("ca init");
        let config_path = dir.path().join("control-plane.yaml");
        let public_addr = SocketAddr::new(addr.ip(), free_port().port());
        let metrics_addr = SocketAddr::new(addr.ip(), free_port().port());
        std::fs::write(
            &config_path,
            config_yaml(
                &layout,
                &td,
                [addr, public_addr, metrics_addr],
                &dir.path().join("data"),
            ),
        )
        .expect("writing config");
        Self {
            dir,
            layout,
            trust_domain: td,
            addr,
            public_addr,
            metrics_addr,
            config_path,
            process: None,
            agent_leftovers: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Another replica of this control plane: the same CA files, its own ports, config and data
    /// directory. Replicas share state only through a store they share (see [`Self::use_etcd`]).
    pub fn replica(&self) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ip = self.addr.ip();
        let port = || SocketAddr::new(ip, free_port().port());
        let (addr, public_addr, metrics_addr) = (port(), port(), port());
        let config_path = dir.path().join("control-plane.yaml");
        std::fs::write(
            &config_path,
            config_yaml(
                &self.layout,
                &self.trust_domain,
                [addr, public_addr, metrics_addr],
                &dir.path().join("data"),
            ),
        )
        .expect("writing config");
        Self {
            dir,
            layout: self.layout.clone(),
            trust_domain: self.trust_domain.clone(),
            addr,
            public_addr,
            metrics_addr,
            config_path,
            process: None,
            agent_leftovers: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Keeps the state in etcd at `endpoints` under `prefix`; call before [`Self::start`].
    pub fn use_etcd(&self, endpoints: &[String], prefix: &str) {
        self.add_config(&format!(
            "store:\n  etcd:\n    endpoints: [{}]\n    prefix: {prefix}\n",
            endpoints.join(", ")
        ));
    }

    pub fn start(&mut self) -> &Child {
        self.start_with(Command::new(binary("ferrule-control-plane")))
    }

    /// Starts the control plane through `command` (the binary, maybe wrapped to run in a netns).
    pub fn start_with(&mut self, mut command: Command) -> &Child {
        let child = Child::spawn(command.arg("--config").arg(&self.config_path));
        // Logged after the listener is bound.
        child.wait_for_line("control plane serving", Duration::from_secs(20));
        self.process.insert(child)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill();
        }
    }

    pub fn process(&self) -> &Child {
        self.process.as_ref().expect("control plane started")
    }

    pub fn bundle(&self) -> SharedBundle {
        let pem = std::fs::read(self.layout.bundle()).expect("bundle.pem");
        SharedBundle::new(TrustBundle::from_pem(self.trust_domain.clone(), &pem).expect("bundle"))
    }

    /// A client TLS config that presents `certs` and expects the control plane's identity.
    pub fn client_tls(&self, certs: Option<Arc<CertSlot>>) -> Arc<rustls::ClientConfig> {
        let expected = ExpectedServer::Exact(SpiffeId::control_plane(&self.trust_domain));
        let verifier = SpiffeServerVerifier::new(self.bundle(), expected);
        Arc::new(tls::client_config(certs, verifier, &[b"h2"]))
    }

    pub fn channel(&self, certs: Option<Arc<CertSlot>>) -> Channel {
        ferrule_proto::channel::lazy(self.addr, self.client_tls(certs))
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        let slot = CertSlot::from_pem_files(&self.layout.admin_cert(), &self.layout.admin_key())
            .expect("admin identity");
        AdminClient::new(self.channel(Some(Arc::new(slot))))
    }

    /// A real agent (in this netns) with `config` and a join token; not waited for.
    pub fn spawn_agent(&self, config: &Path, token: &str) -> Child {
        Child::spawn(
            Command::new(binary("ferrule-agent"))
                .arg("--config")
                .arg(config)
                .env("FERRULE_JOIN_TOKEN", token),
        )
    }

    /// The control plane's `/metrics`, scraped with curl.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "5"])
            .arg(format!("http://{}/metrics", self.metrics_addr))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The value of one series of `/metrics` (`name{labels}` exactly as exposed), 0 if absent.
    pub fn counter(&self, series: &str) -> f64 {
        crate::metrics::series_value(&self.metrics(), series)
    }

    /// Appends `yaml` (whole top-level sections) to the config; call before [`Self::start`].
    pub fn add_config(&self, yaml: &str) {
        let mut config = std::fs::read_to_string(&self.config_path).expect("reading config");
        config.push_str(yaml);
        std::fs::write(&self.config_path, config).expect("writing config");
    }

    /// `ferrule ARGS` as the operator of this control plane.
    pub fn ferrule(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary("ferrule"))
            .args(args)
            .env("FERRULE_CA_DIR", self.layout.dir())
            .env("FERRULE_CONTROL_PLANE", self.addr.to_string())
            .output()
            .expect("running ferrule")
    }

    /// Creates a join token through the Admin API.
    pub async fn join_token(&self, node: &str, allow: &[&str], ttl: Duration) -> String {
        self.join_token_with_pods(node, allow, &[], ttl).await
    }

    /// Creates a join token that binds `pod_cidrs` to the node.
    pub async fn join_token_with_pods(
        &self,
        node: &str,
        allow: &[&str],
        pod_cidrs: &[&str],
        ttl: Duration,
    ) -> String {
        let request = ferrule_proto::v1::CreateJoinTokenRequest {
            node: node.into(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            pod_cidrs: pod_cidrs.iter().map(|s| s.to_string()).collect(),
            ttl_seconds: ttl.as_secs(),
        };
        self.admin()
            .create_join_token(request)
            .await
            .expect("creating a join token")
            .into_inner()
            .token
    }

    /// Joins as `node` directly over gRPC, as an agent would; returns the node's mTLS identity.
    pub async fn join_node(&self, node: &str, allow: &[&str]) -> Arc<CertSlot> {
        self.join_node_with_pods(node, allow, &[]).await
    }

    /// Joins as `node` owning `pod_cidrs`, so that it can register workloads there.
    pub async fn join_node_with_pods(
        &self,
        node: &str,
        allow: &[&str],
        pod_cidrs: &[&str],
    ) -> Arc<CertSlot> {
        let ttl = Duration::from_secs(600);
        let token = self.join_token_with_pods(node, allow, pod_cidrs, ttl).await;
        let (id, cert) = ferrule_node_agent::control::join(
            self.addr,
            &self.bundle(),
            ferrule_node_agent::control::JoinCredential::Token(&token),
        )
        .await
        .expect("join");
        assert_eq!(
            id.to_string(),
            format!("spiffe://{}/node/{node}", self.trust_domain)
        );
        Arc::new(CertSlot::new(cert.certified.clone()))
    }

    /// Writes an agent config for this control plane into `dir`; returns its path. The agent's
    /// enrollment socket and bpffs pins are its own, so agents of parallel tests never meet.
    pub fn agent_config(&self, dir: &Path, node: &str) -> PathBuf {
        self.agent_config_for(dir, node, &self.addr.to_string())
    }

    /// Like [`Self::agent_config`], for the control plane at `control_plane` (several replicas,
    /// comma-separated).
    pub fn agent_config_for(&self, dir: &Path, node: &str, control_plane: &str) -> PathBuf {
        let path = dir.join(format!("agent-{node}.yaml"));
        let state = dir.join(format!("agent-{node}"));
        let text = format!(
            "node_name: {node}\ncontrol_plane: {}\ntrust_domain: {}\nbundle: {}\ndata_dir: {}\n\
             enroll_socket: {}\ncapture:\n  pin_dir: {}\n\
             metrics_listen: 127.0.0.1:0\naccess_log: {}\n",
            control_plane,
            self.trust_domain,
            self.layout.bundle().display(),
            state.display(),
            state.join("agent.sock").display(),
            self.pin_dir(node).display(),
            state.join("access.log").display(),
        );
        std::fs::write(&path, text).expect("writing agent config");
        let env = ferrule_node_agent::config::MapEnv::default();
        let config = ferrule_node_agent::config::Config::load(&path, &env).expect("agent config");
        self.agent_leftovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(config.capture.pin_dir);
        path
    }

    /// Where the agent for `node` pins its eBPF programs and maps.
    pub fn pin_dir(&self, node: &str) -> PathBuf {
        // The temporary directory's name is unique among running tests; bpffs refuses dots.
        let unique = self
            .dir
            .path()
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .replace('.', "");
        PathBuf::from(format!("/sys/fs/bpf/ferrule-test{unique}-{node}"))
    }
}

impl Drop for ControlPlaneFixture {
    fn drop(&mut self) {
        self.stop();
        // Pinned programs outlive agents on purpose; the test's pins go with the test.
        for pin_dir in self
            .agent_leftovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = std::fs::remove_dir_all(pin_dir);
        }
    }
}

fn config_yaml(
    layout: &CaLayout,
    td: &TrustDomain,
    [addr, public, metrics]: [SocketAddr; 3],
    data: &Path,
) -> String {
    let ip = addr.ip();
    format!(
        "trust_domain: {td}\nlisten: {addr}\npublic_listen: {public}\nmetrics_listen: {metrics}\nserver:\n  ip_addresses: [\"{ip}\"]\ndata_dir: {}\nca:\n  chain: {}\n  bundle: {}\n  offline_crls: {}\n  signer:\n    file:\n      key: {}\n",
        data.display(),
        layout.chain().display(),
        layout.bundle().display(),
        layout.offline_crls().display(),
        layout.issuing_key().display()
    )
}
