//! The test's libcni and agent: runs a conflist plugin by plugin (env, stdin, prevResult)
//! inside a node network namespace, and answers the agent's CNI API on a Unix socket.
// Shared by the chain and api test crates; each uses part of it.
#![allow(dead_code)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tempfile::TempDir;

const PLUGIN: &str = env!("CARGO_BIN_EXE_ferrule-cni");
const DEBIAN_PLUGINS: &str = "/usr/lib/cni";

/// A name no other test (or test run) uses at the same time.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2) runs");
    assert!(status.success(), "ip {args:?} failed");
}

/// One plugin run.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

fn execute(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs ferrule-cni alone with exactly `env`.
pub fn run_plugin(env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(PLUGIN);
    cmd.env_clear().envs(env.iter().copied());
    execute(cmd, stdin)
}

/// A node netns with a pod netns, a temporary directory and a bridge conflist whose last
/// plugin is ferrule-cni.
pub struct Chain {
    dir: TempDir,
    id: String,
    node_ns: String,
    pod_ns: String,
    conf_dir: PathBuf,
    bin_dir: PathBuf,
    /// ferrule-cni runs in the test's own network namespace (to reach an API double on its
    /// loopback), the other plugins in the node namespace.
    plugin_in_host_netns: bool,
}

const CONFLIST: &str = "10-bridge.conflist";

impl Chain {
    pub fn new(cni_version: &str) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let id = unique("fc");
        let (node_ns, pod_ns) = (format!("{id}n"), format!("{id}p"));
        ip(&["netns", "add", &node_ns]);
        let chain = Chain {
            conf_dir: dir.path().join("net.d"),
            bin_dir: dir.path().join("bin"),
            dir,
            id,
            node_ns,
            pod_ns,
            plugin_in_host_netns: false,
        };
        ip(&["netns", "add", &chain.pod_ns]);
        ip(&["-n", &chain.node_ns, "link", "set", "lo", "up"]);
        std::fs::create_dir_all(&chain.conf_dir).unwrap();
        let mut conflist = chain.bridge_conflist(cni_version);
        conflist["plugins"].as_array_mut().unwrap().push(json!({
            "type": "ferrule-cni", "agent_socket": chain.agent_socket(),
            "exclude_namespaces": ["kube-system"], "timeout_seconds": 2,
        }));
        chain.write_conflist(&conflist);
        chain
    }

    fn bridge_conflist(&self, cni_version: &str) -> Value {
        json!({
            "cniVersion": cni_version,
            "name": format!("{}-net", self.id),
            "plugins": [{
                "type": "bridge", "bridge": format!("{}b", self.id), "isGateway": true,
                "ipam": {"type": "host-local", "dataDir": self.dir.path().join("ipam"),
                         "ranges": [[{"subnet": "10.209.0.0/24"}]]}
            }]
        })
    }

    fn write_conflist(&self, conflist: &Value) {
        let text = serde_json::to_string_pretty(conflist).unwrap();
        std::fs::write(self.conf_dir.join(CONFLIST), text).unwrap();
    }

    /// ferrule-cni falls back to an API server on a closed loopback port of the node netns.
    pub fn with_unreachable_api(self) -> Chain {
        let kubeconfig = self.dir.path().join("api.kubeconfig");
        std::fs::write(
            &kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
             server: https://127.0.0.1:9\n    insecure-skip-tls-verify: true\nusers:\n\
             - name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    \
             cluster: c\n    user: u\ncurrent-context: x\n",
        )
        .unwrap();
        let mut conflist = self.conflist();
        conflist["plugins"][1]["kubeconfig"] = json!(kubeconfig);
        self.write_conflist(&conflist);
        self
    }

    /// ferrule-cni falls back to the API server of `kubeconfig`, on this process's loopback.
    pub fn with_api(mut self, kubeconfig: &Path) -> Chain {
        let mut conflist = self.conflist();
        conflist["plugins"][1]["kubeconfig"] = json!(kubeconfig);
        self.write_conflist(&conflist);
        self.plugin_in_host_netns = true;
        self
    }

    /// The conflist holds only the bridge; ferrule-cni's installer adds itself and copies the
    /// binary into a bin dir of its own.
    pub fn installed_by_the_installer(self) -> Chain {
        self.installed_with_api(None)
    }

    /// [`Self::installed_by_the_installer`], with the plugin's kubeconfig written by the
    /// installer from `api`.
    pub fn installed_with_api(mut self, api: Option<ferrule_cni::ApiAccess>) -> Chain {
        self.write_conflist(&self.bridge_conflist("1.0.0"));
        let mut config = ferrule_cni::InstallConfig::new(PLUGIN, &self.bin_dir, &self.conf_dir);
        config.host_conf_dir = self.conf_dir.clone();
        config.agent_socket = self.agent_socket();
        self.plugin_in_host_netns = api.is_some();
        config.api = api;
        let installed = ferrule_cni::install(&config).unwrap();
        assert_eq!(installed.conflist, self.conf_dir.join(CONFLIST));
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn agent_socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    pub fn conflist(&self) -> Value {
        let text = std::fs::read_to_string(self.conf_dir.join(CONFLIST)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn container_id(&self) -> String {
        format!("{}-sandbox", self.id)
    }

    pub fn pod_uid(&self) -> String {
        format!("{}-uid", self.id)
    }

    pub fn pod_netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.pod_ns)
    }

    /// The address eth0 really has in the pod netns.
    pub fn pod_ipv4(&self) -> Ipv4Addr {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.pod_ns,
                "-j",
                "-4",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .unwrap();
        let addrs: Value = serde_json::from_slice(&out.stdout).unwrap();
        addrs[0]["addr_info"][0]["local"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The first address of an ADD's result.
    pub fn pod_ipv4_from(&self, add: &ChainRun) -> Ipv4Addr {
        let result = add.expect_ok();
        let cidr = result["ips"][0]["address"].as_str().unwrap();
        cidr.split('/').next().unwrap().parse().unwrap()
    }

    fn cni_args(&self, namespace: &str, name: &str) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};\
             K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.container_id(),
            self.pod_uid()
        )
    }

    pub fn add(&self, namespace: &str, name: &str) -> ChainRun {
        self.add_with_args(&self.cni_args(namespace, name))
    }

    /// ADD as containerd does it: the loopback network on `lo`, then the conflist on eth0.
    pub fn add_with_args(&self, cni_args: &str) -> ChainRun {
        let lo = json!({"cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback"});
        let out = self.exec("loopback", "ADD", "lo", cni_args, lo.to_string().as_bytes());
        assert!(out.success, "loopback ADD: {out:?}");
        self.run_list("ADD", cni_args, None)
    }

    /// DEL in reverse order with the cached result of `add`, as libcni does.
    pub fn del(&self, namespace: &str, name: &str, add: &ChainRun) -> ChainRun {
        self.run_list(
            "DEL",
            &self.cni_args(namespace, name),
            add.result.clone().ok(),
        )
    }

    pub fn check(&self, namespace: &str, name: &str, add: &ChainRun) -> ChainRun {
        self.run_list(
            "CHECK",
            &self.cni_args(namespace, name),
            add.result.clone().ok(),
        )
    }

    fn run_list(&self, command: &str, cni_args: &str, cached: Option<Value>) -> ChainRun {
        let conflist = self.conflist();
        let mut plugins = conflist["plugins"].as_array().unwrap().clone();
        if command == "DEL" {
            plugins.reverse();
        }
        let mut run = ChainRun {
            inputs: Vec::new(),
            result: Ok(Value::Null),
        };
        let mut prev = cached.clone();
        for mut plugin in plugins {
            let plugin_type = plugin["type"].as_str().unwrap().to_owned();
            plugin["name"] = conflist["name"].clone();
            plugin["cniVersion"] = conflist["cniVersion"].clone();
            if let Some(prev) = &prev {
                plugin["prevResult"] = prev.clone();
            }
            run.inputs.push((plugin_type.clone(), plugin.clone()));
            let out = self.exec(
                &plugin_type,
                command,
                "eth0",
                cni_args,
                plugin.to_string().as_bytes(),
            );
            if !out.success {
                eprintln!("{plugin_type} {command} failed; stderr: {}", out.stderr);
                run.result = Err(out.json());
                return run;
            }
            if command == "ADD" {
                prev = Some(out.json());
            } else {
                assert!(
                    out.stdout.is_empty(),
                    "{plugin_type} {command} printed {out:?}"
                );
            }
        }
        run.result = Ok(match command {
            "ADD" => prev.unwrap(),
            _ => Value::Null,
        });
        run
    }

    fn cni_path(&self) -> String {
        let ours = Path::new(PLUGIN).parent().unwrap().display().to_string();
        let installed = self.bin_dir.display().to_string();
        format!("{installed}:{DEBIAN_PLUGINS}:{ours}")
    }

    /// Runs plugin `plugin_type` from CNI_PATH in the node netns, the way libcni execs it.
    fn exec(
        &self,
        plugin_type: &str,
        command: &str,
        ifname: &str,
        cni_args: &str,
        stdin: &[u8],
    ) -> Output {
        let path = self
            .cni_path()
            .split(':')
            .map(|dir| Path::new(dir).join(plugin_type))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("plugin {plugin_type} not in CNI_PATH {}", self.cni_path()));
        let mut cmd = match self.plugin_in_host_netns && plugin_type == "ferrule-cni" {
            true => Command::new(path),
            false => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &self.node_ns]).arg(path);
                cmd
            }
        };
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", self.container_id())
            .env("CNI_NETNS", self.pod_netns_path())
            .env("CNI_IFNAME", ifname)
            .env("CNI_ARGS", cni_args)
            .env("CNI_PATH", self.cni_path());
        execute(cmd, stdin)
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        for ns in [&self.pod_ns, &self.node_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// What a chain run gave: each plugin's stdin, and the last result or the error.
pub struct ChainRun {
    inputs: Vec<(String, Value)>,
    result: Result<Value, Value>,
}

impl ChainRun {
    pub fn expect_ok(&self) -> Value {
        match &self.result {
            Ok(result) => result.clone(),
            Err(error) => panic!("expected success, the chain failed with {error}"),
        }
    }

    pub fn expect_ok_empty(&self) {
        assert_eq!(self.expect_ok(), Value::Null);
    }

    pub fn expect_err(&self) -> Value {
        match &self.result {
            Ok(result) => panic!("expected an error, the chain succeeded with {result}"),
            Err(error) => error.clone(),
        }
    }

    /// The `prevResult` plugin `plugin_type` was given.
    pub fn prev_result_of(&self, plugin_type: &str) -> Value {
        let (_, input) = self
            .inputs
            .iter()
            .find(|(t, _)| t == plugin_type)
            .unwrap_or_else(|| panic!("{plugin_type} did not run"));
        input["prevResult"].clone()
    }
}

/// The fake agent's answer to one request.
pub struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_owned(),
        }
    }
}

type Requests = Arc<Mutex<Vec<(String, Value)>>>;

/// The agent's CNI API on `<dir>/agent.sock`, answering with `reply(path)` and recording each
/// request's path and JSON body (null when empty).
pub struct FakeAgent {
    socket: PathBuf,
    requests: Requests,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAgent {
    pub fn start(dir: &Path, reply: fn(&str) -> Reply) -> FakeAgent {
        let socket = dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let requests = Requests::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, listening) = std::sync::mpsc::channel();
        let (path, recorded) = (socket.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                ready.send(()).unwrap();
                let respond = move |request: http::Request<hyper::body::Incoming>| {
                    let recorded = recorded.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let body = match body.is_empty() {
                            true => Value::Null,
                            false => serde_json::from_slice(&body).unwrap(),
                        };
                        recorded.lock().unwrap().push((path.clone(), body));
                        let reply = reply(&path);
                        http::Response::builder()
                            .status(reply.status)
                            .body(Full::new(Bytes::from(reply.body)))
                            .unwrap()
                    }
                };
                let shutdown = async {
                    let _ = stopped.await;
                };
                ferrule_config::http::serve_async(listener, "fake agent", respond, shutdown).await;
            });
        });
        listening.recv().expect("the fake agent binds its socket");
        FakeAgent {
            socket,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<(String, Value)> {
        self.requests.lock().unwrap().clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|(path, _)| path).collect()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
        let _ = std::fs::remove_file(&self.socket);
    }
}
