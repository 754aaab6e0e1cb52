//! A real etcd cluster (Debian's `etcd-server`) on loopback for the HA tests: each member in its
//! own data directory with its own client and peer ports, killed and restarted at will.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{Child, free_port};

/// The largest configuration write a test makes fits in one transaction (etcd's default is 128).
const MAX_TXN_OPS: &str = "10000";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes the command that runs a program where the cluster lives (this netns, or a node's).
pub type Launcher = Box<dyn Fn(&str) -> Command + Send + Sync>;

pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    launcher: Launcher,
}

struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    process: Option<Child>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until the cluster has a leader and serves writes.
    pub fn start(size: usize) -> Self {
        Self::start_with(size, Box::new(|program| Command::new(program)))
    }

    /// Like [`Self::start`], running etcd (and etcdctl) through `launcher`, e.g. in a node's
    /// network namespace, where its loopback addresses are that namespace's.
    pub fn start_with(size: usize, launcher: Launcher) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let members = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                process: None,
            })
            .collect();
        let mut cluster = Self {
            dir,
            members,
            launcher,
        };
        for i in 0..size {
            cluster.start_member(i, "new");
        }
        cluster.wait_healthy();
        cluster
    }

    /// `http://127.0.0.1:port` of every member, for `store.etcd.endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{}", m.client))
            .collect()
    }

    pub fn endpoint(&self, member: usize) -> String {
        format!("http://{}", self.members[member].client)
    }

    fn data_dir(&self, member: usize) -> PathBuf {
        self.dir.path().join(&self.members[member].name)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start_member(&mut self, i: usize, state: &str) {
        let member = &self.members[i];
        let (client, peer) = (
            format!("http://{}", member.client),
            format!("http://{}", member.peer),
        );
        let mut command = (self.launcher)("etcd");
        command.args([
            "--name",
            &member.name,
            "--data-dir",
            &self.data_dir(i).display().to_string(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &self.initial_cluster(),
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            &format!("ferrule-test-{}", std::process::id()),
            "--max-txn-ops",
            MAX_TXN_OPS,
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]);
        let process = Child::spawn(&mut command);
        self.members[i].process = Some(process);
    }

    /// Kills member `i` (`kill -9`); its data stays for [`Self::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            process.kill();
        }
    }

    /// Restarts a killed member from its data directory.
    pub fn restart(&mut self, i: usize) {
        self.start_member(i, "existing");
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            self.restart(i);
        }
        self.wait_healthy();
    }

    /// `etcdctl` against the running members.
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        let endpoints: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.process.is_some())
            .map(|m| format!("http://{}", m.client))
            .collect();
        (self.launcher)("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(args)
            .output()
            .expect("running etcdctl")
    }

    /// Index of the member that is the raft leader now.
    pub fn leader(&self) -> usize {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        let statuses: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("etcdctl endpoint status json");
        let leader_id = statuses[0]["Status"]["leader"].as_u64().expect("leader id");
        let leader = statuses
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader_id))
            .and_then(|s| s["Endpoint"].as_str())
            .expect("the leader's endpoint");
        (0..self.members.len())
            .find(|i| self.endpoint(*i) == leader)
            .expect("leader among the members")
    }

    /// Compacts etcd's history up to its current revision (what `--auto-compaction` does).
    pub fn compact_history(&self) -> u64 {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        let statuses: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("etcdctl endpoint status json");
        let revision = statuses[0]["Status"]["header"]["revision"]
            .as_u64()
            .expect("revision");
        let out = self.etcdctl(&["compaction", &revision.to_string(), "--physical"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        revision
    }

    fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            let out = self.etcdctl(&["put", "/ferrule-test/health", "ok"]);
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "etcd did not become healthy: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every running member's output, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| {
                Some(format!(
                    "--- {} ---\n{}",
                    m.name,
                    m.process.as_ref()?.output()
                ))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
