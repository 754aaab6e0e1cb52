//! Needs root: creates real network namespaces with `ip netns` and enters them.

use std::io::ErrorKind;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Netns, NetnsError, current_cookie};

/// A named namespace with loopback up (as a pod has), deleted when dropped.
struct TempNetns {
    name: String,
}

impl TempNetns {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ferrule-t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(&["netns", "add", &name]);
        let ns = Self { name };
        run(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for TempNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed: {status}");
}

fn thread_netns() -> std::path::PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").expect("read own netns link")
}

/// Connects from inside `ns` with a separate process, sends "ping", prints the answer.
const CLIENT: &str = "import socket,sys
s=socket.create_connection(('127.0.0.1',int(sys.argv[1])),5)
s.sendall(b'ping')
print(s.recv(4).decode())";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_is_inside_the_namespace_and_invisible_from_the_node() {
    let node_ns = thread_netns();
    let pod = TempNetns::new();
    let ns = Netns::open(pod.path()).expect("open the test namespace");

    let listener = ns.tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();

    let from_node = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert_eq!(
        from_node.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::ConnectionRefused),
        "the node namespace must not reach the pod's 127.0.0.1:{port}, got {from_node:?}"
    );

    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut ping = [0u8; 4];
        conn.read_exact(&mut ping).await.unwrap();
        conn.write_all(b"pong").await.unwrap();
        ping
    });
    let client = tokio::process::Command::new("ip")
        .args(["netns", "exec", &pod.name, "python3", "-c", CLIENT])
        .arg(port.to_string())
        .output()
        .await
        .unwrap();
    assert!(
        client.status.success(),
        "client in the namespace failed: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&client.stdout).trim(), "pong");
    assert_eq!(&server.await.unwrap(), b"ping");
    assert_eq!(
        thread_netns(),
        node_ns,
        "the calling thread changed namespace"
    );
}

#[tokio::test]
async fn cookie_names_the_namespace() {
    let pod = TempNetns::new();
    let ns = Netns::open(pod.path()).unwrap();
    let cookie = ns.cookie().unwrap();
    let node = current_cookie().unwrap();
    assert_ne!(cookie, node, "pod and node namespaces have the same cookie");
    let again = Netns::open(pod.path()).unwrap().cookie().unwrap();
    assert_eq!(cookie, again, "two handles to one namespace disagree");
}

#[tokio::test]
async fn a_socket_made_inside_connects_inside() {
    let pod = TempNetns::new();
    let ns = Netns::open(pod.path()).unwrap();
    let listener = ns.tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = ns.tcp_socket(false).unwrap();
    let (connected, accepted) = tokio::join!(socket.connect(addr), listener.accept());
    assert_eq!(
        connected.unwrap().peer_addr().unwrap(),
        addr,
        "connected elsewhere"
    );
    accepted.unwrap();
}

#[test]
fn a_file_that_is_not_a_network_namespace_is_refused() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = Netns::open(file.path()).expect_err("a plain file is not a netns");
    assert!(matches!(err, NetnsError::Enter { .. }), "got {err}");
    let err = Netns::open("/proc/self/ns/uts").expect_err("a UTS namespace is not a netns");
    assert!(matches!(err, NetnsError::Enter { .. }), "got {err}");
}
