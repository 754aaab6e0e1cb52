//! Privileged: these build real clusters (run as root, as `cargo xtask test` does).

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::panic;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Cluster, Pod, cgroup2_root, cleanup_stale, teardown};
use crate::process::Child;

const PORT: &str = "8080";
const WAIT: Duration = Duration::from_secs(10);

/// Answers every connection with one line naming itself and the peer address it saw.
const SERVER: &str = r#"
import socket, sys
port, tag = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(f"{tag} saw {peer[0]}\n".encode())
    c.close()
"#;

const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.makefile().readline().strip())
"#;

fn build(nodes: usize, pods: usize) -> Cluster {
    Cluster::builder()
        .nodes(nodes)
        .pods_per_node(pods)
        .build()
        .unwrap_or_else(|e| panic!("building a {nodes}x{pods} cluster: {e}"))
}

fn serve(pod: &Pod, tag: &str) -> Child {
    let server = pod.spawn("python3", ["-c", SERVER, PORT, tag]);
    server.wait_for_line("listening", WAIT);
    server
}

/// The line the server at `ip` sends to a client in `from`.
fn ask(from: &Pod, ip: Ipv4Addr) -> String {
    let out = from
        .command("python3")
        .args(["-c", CLIENT, &ip.to_string(), PORT])
        .output()
        .expect("running the client");
    assert!(
        out.status.success(),
        "client in {} could not reach {ip}:{PORT} ({}): {}",
        from.name,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn pods_reach_a_pod_on_another_node_and_on_their_own() {
    let cluster = build(2, 2);
    let target = cluster.pod(0, 0);
    let _server = serve(target, "server");
    for client in [cluster.pod(1, 1), cluster.pod(0, 1)] {
        // The server sees the client's own pod IP: routed, not NATed.
        assert_eq!(
            ask(client, target.ip),
            format!("server saw {}", client.ip),
            "reply to {}",
            client.name
        );
    }
}

/// A process killed when dropped, for `pod.command(..).spawn()` whose pid we need.
struct Process(std::process::Child);

impl Process {
    fn sleep_in(mut command: Command) -> Self {
        let child = command
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning sleep");
        let process = Self(child);
        process.wait_until_exec("sleep");
        process
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The wrapper joins cgroup and netns under the same pid before it execs the program; wait
    /// for that, or we would look at the wrapper half-way.
    fn wait_until_exec(&self, comm: &str) {
        let start = Instant::now();
        let path = format!("/proc/{}/comm", self.pid());
        while fs::read_to_string(&path).unwrap_or_default().trim() != comm {
            assert!(
                start.elapsed() < WAIT,
                "pid {} never became {comm}",
                self.pid()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn cgroup(&self) -> String {
        let text = fs::read_to_string(format!("/proc/{}/cgroup", self.pid())).expect("cgroup");
        let v2 = text.lines().find_map(|l| l.strip_prefix("0::"));
        v2.unwrap_or_else(|| panic!("no cgroup v2 line in {text:?}"))
            .to_owned()
    }

    fn netns(&self) -> String {
        let link = fs::read_link(format!("/proc/{}/ns/net", self.pid())).expect("ns/net");
        link.to_string_lossy().into_owned()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Already dead in the teardown test; then these errors are expected.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `/proc/<pid>/cgroup` spells a cgroup relative to the cgroup2 mount.
fn relative_cgroup(path: &Path) -> String {
    let root = cgroup2_root().expect("cgroup2 mount");
    format!(
        "/{}",
        path.strip_prefix(&root).expect("under cgroup2").display()
    )
}

/// How `/proc/<pid>/ns/net` names the namespace that the handle at `path` pins.
fn netns_id(path: &Path) -> String {
    let ino = fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino();
    format!("net:[{ino}]")
}

#[test]
fn pod_and_node_commands_run_in_their_cgroup_and_netns() {
    let cluster = build(1, 2);
    let pod = cluster.pod(0, 1);
    let in_pod = Process::sleep_in(pod.command("sleep"));
    assert_eq!(in_pod.cgroup(), relative_cgroup(&pod.cgroup));
    assert_eq!(in_pod.netns(), netns_id(&pod.netns));
    assert_ne!(in_pod.netns(), netns_id(Path::new("/proc/self/ns/net")));

    let node = cluster.node(0);
    let on_node = Process::sleep_in(node.command("sleep"));
    assert_eq!(on_node.cgroup(), relative_cgroup(&node.system_cgroup));
    assert_eq!(on_node.netns(), netns_id(&node.netns));

    // Unlike under `ip netns exec`, node processes (the agent) see the pods' cgroups.
    let procs = pod.cgroup.join("cgroup.procs");
    let out = node.command("cat").arg(&procs).output().expect("cat");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.lines().any(|l| l == in_pod.pid().to_string()),
        "node-0 reading {}: {} {listed:?} {}",
        procs.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Panics unless nothing named after `name` is left: namespaces, links here, cgroups, owner.
fn assert_gone(name: &str, cgroup: &Path) {
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains(name), "namespaces of {name} left: {netns}");
    let links = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(name), "links of {name} left: {links}");
    assert!(!cgroup.exists(), "{} left", cgroup.display());
    let owner = teardown::owner_file(name);
    assert!(!owner.exists(), "{} left", owner.display());
}

#[test]
fn dropping_a_cluster_kills_its_processes_and_removes_everything() {
    let cluster = build(2, 2);
    let (name, cgroup) = (cluster.name().to_owned(), cluster.cgroup().to_owned());
    assert!(cgroup.join("node-1/pod-1-1").is_dir(), "pod cgroup exists");
    let mut in_pod = Process::sleep_in(cluster.pod(1, 1).command("sleep"));
    let mut on_node = Process::sleep_in(cluster.node(0).command("sleep"));

    drop(cluster);

    assert_gone(&name, &cgroup);
    for process in [&mut in_pod, &mut on_node] {
        let status = process.0.try_wait().expect("try_wait");
        assert_eq!(
            status.and_then(|s| s.signal()),
            Some(9),
            "killed: {status:?}"
        );
    }
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let mut built = None;
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        let cluster = build(2, 1);
        built = Some((cluster.name().to_owned(), cluster.cgroup().to_owned()));
        let _server = serve(cluster.pod(0, 0), "doomed");
        panic!("the test fails");
    }));
    assert!(result.is_err(), "the closure panicked");
    let (name, cgroup) = built.expect("the cluster was built before the panic");
    assert_gone(&name, &cgroup);
}

#[test]
fn two_clusters_with_the_same_addresses_exist_at_once() {
    let (a, b) = (build(2, 1), build(2, 1));
    assert_ne!(a.name(), b.name());
    assert_eq!(a.pod(0, 0).ip, b.pod(0, 0).ip, "same address plan");
    let _servers = [serve(a.pod(0, 0), a.name()), serve(b.pod(0, 0), b.name())];
    for cluster in [&a, &b] {
        let client = cluster.pod(1, 0);
        assert_eq!(
            ask(client, cluster.pod(0, 0).ip),
            format!("{} saw {}", cluster.name(), client.ip),
            "each cluster reaches its own server"
        );
    }
}

#[test]
fn cleanup_stale_removes_clusters_of_dead_processes_only() {
    let live = build(1, 1);
    let crashed = build(1, 1);
    let (name, cgroup) = (crashed.name().to_owned(), crashed.cgroup().to_owned());
    let mut orphan = Process::sleep_in(crashed.pod(0, 0).command("sleep"));
    // As if the test process had been killed: no Drop, and the owner is a process that is gone.
    std::mem::forget(crashed);
    let mut gone = Command::new("true").spawn().expect("true");
    let dead_pid = gone.id();
    gone.wait().expect("wait");
    fs::write(teardown::owner_file(&name), format!("{dead_pid} 0\n")).expect("owner file");

    assert_eq!(
        cleanup_stale(&name).expect("cleanup"),
        std::slice::from_ref(&name)
    );
    assert_gone(&name, &cgroup);
    let status = orphan.0.try_wait().expect("try_wait");
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(9),
        "killed: {status:?}"
    );

    assert_eq!(
        cleanup_stale(live.name()).expect("cleanup"),
        Vec::<String>::new(),
        "a live cluster is not stale"
    );
    assert!(live.node(0).netns.exists(), "live cluster kept");
}
