//! Fixtures for the privileged capture tests: network namespaces and veth links, "pods" (a
//! cgroup plus a netns), processes inside a pod, and sockets the test itself opens inside a
//! netns the way the agent does (from a thread that entered it, while the process stays in the
//! root cgroup). Everything is removed in `Drop`, so a failing assertion leaves nothing behind.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsFd as _,
    path::PathBuf,
    process::{ChildStdout, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::ebpf::testing::{KillOnDrop, unique_name};
pub(super) use crate::ebpf::testing::{TempMountDir, TestCgroup, require_root};

use super::{CaptureConfig, netns_cookie_of};

/// Runs `ip args..` and fails the test with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run `ip` (iproute2)");
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A named network namespace (`ip netns add`) with loopback up; deleted on drop.
pub(super) struct TestNetns {
    name: String,
}

impl TestNetns {
    pub(super) fn create() -> Self {
        let name = unique_name("ns");
        ip(&["netns", "add", &name]);
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    pub(super) fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <this netns> args..`
    pub(super) fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Adds `cidr` (e.g. "10.50.0.1/32") to loopback: a local address traffic can reach
    /// without leaving the namespace.
    pub(super) fn add_local_address(&self, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", "lo"]);
    }

    /// A veth pair between this namespace and `other`, both ends named eth0 and up.
    pub(super) fn link_to(&self, cidr: &str, other: &Self, other_cidr: &str) {
        self.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &other.name,
        ]);
        for (netns, cidr) in [(self, cidr), (other, other_cidr)] {
            netns.ip(&["addr", "add", cidr, "dev", "eth0"]);
            netns.ip(&["link", "set", "eth0", "up"]);
        }
    }

    /// Runs `f` on a thread that entered this namespace; sockets it opens stay in it. The test
    /// process does not change cgroup, like the agent.
    pub(super) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let netns = File::open(self.path()).expect("open the netns file");
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    move_into_link_name_space(netns.as_fd(), Some(LinkNameSpaceType::Network))
                        .expect("setns into the test netns");
                    f()
                })
                .join()
                .expect("thread inside the netns panicked")
        })
    }

    pub(super) fn tcp_listener(&self, addr: &str) -> TcpListener {
        self.run(|| TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind TCP {addr} in {}: {e}", self.name))
    }

    pub(super) fn udp_socket(&self, addr: &str) -> UdpSocket {
        self.run(|| UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("bind UDP {addr} in {}: {e}", self.name))
    }

    pub(super) fn cookie(&self) -> u64 {
        let socket = self.tcp_listener("127.0.0.1:0");
        netns_cookie_of(&socket).expect("SO_NETNS_COOKIE")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("warning: could not delete test netns {}", self.name);
        }
    }
}

/// A pod as the agent sees it: a cgroup and a network namespace.
pub(super) struct TestPod {
    pub(super) netns: TestNetns,
    pub(super) cgroup: TestCgroup,
}

impl TestPod {
    pub(super) fn create() -> Self {
        Self {
            netns: TestNetns::create(),
            cgroup: TestCgroup::create(),
        }
    }

    /// Starts `python3 -c script args..` inside the pod: in its netns (nsenter, before exec) and
    /// its cgroup (moved by us before the script is released through stdin: `ip netns exec`
    /// would remount /sys and hide the cgroup tree). The script must read one stdin line first.
    pub(super) fn spawn_python(&self, script: &str, args: &[&str]) -> PodProcess {
        let netns = format!("--net={}", self.netns.path().display());
        let child = Command::new("nsenter")
            .args([netns.as_str(), "python3", "-c", script])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn nsenter + python3");
        let mut child = KillOnDrop(child);
        self.cgroup.add_process(child.0.id());
        let mut stdin = child.0.stdin.take().expect("child stdin");
        writeln!(stdin, "go").expect("release the child");
        let stdout = BufReader::new(child.0.stdout.take().expect("child stdout"));
        PodProcess { child, stdout }
    }

    /// Runs a script inside the pod to completion and returns its stdout.
    pub(super) fn run_python(&self, script: &str, args: &[&str]) -> String {
        let mut process = self.spawn_python(script, args);
        let mut out = String::new();
        process
            .stdout
            .read_to_string(&mut out)
            .expect("read the child's stdout");
        let status = process.child.0.wait().expect("wait for the child");
        assert!(
            status.success(),
            "pod process failed ({status}); printed {out:?}"
        );
        out
    }
}

/// A process running inside a test pod; killed on drop.
pub(super) struct PodProcess {
    child: KillOnDrop,
    stdout: BufReader<ChildStdout>,
}

impl PodProcess {
    pub(super) fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the child's stdout");
        line.trim_end().to_owned()
    }
}

/// A capture configuration pinning in `bpffs`'s directory, where `load_or_adopt` mounts a
/// private bpffs (unmounted, releasing every pin, when `bpffs` drops).
pub(super) fn test_config(bpffs: &TempMountDir) -> CaptureConfig {
    CaptureConfig {
        pin_dir: bpffs.path().to_owned(),
        ..CaptureConfig::default()
    }
}

/// Accepts one connection within `wait` and returns what the client sent (until it closed)
/// and its address; `None` if nobody connected.
pub(super) fn accept_within(
    listener: &TcpListener,
    wait: Duration,
) -> Option<(String, SocketAddr)> {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => return Some((read_all(stream), peer)),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

fn read_all(mut stream: TcpStream) -> String {
    stream.set_nonblocking(false).expect("blocking stream");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut received = String::new();
    stream
        .read_to_string(&mut received)
        .expect("read what the client sent");
    received
}

/// One datagram received within `wait`, if any.
pub(super) fn receive_within(socket: &UdpSocket, wait: Duration) -> Option<String> {
    socket.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buf = [0u8; 256];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}
