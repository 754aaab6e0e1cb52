use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::lifecycle::{Drain, Listeners};

#[derive(Default)]
struct Pods {
    begun: AtomicUsize,
    aborted: AtomicUsize,
}

fn spec(uid: &str) -> PodSpec {
    PodSpec {
        uid: uid.into(),
        name: uid.into(),
        namespace: "shop".into(),
        service_account: "web".into(),
        ips: vec!["10.0.0.7".parse().unwrap()],
        netns: "/run/netns/x".into(),
        cgroup: "/sys/fs/cgroup/x".into(),
        mode: Default::default(),
        labels: Default::default(),
    }
}

#[tonic::async_trait]
impl Handing for Pods {
    async fn begin_handover(&self) -> Vec<PodSpec> {
        self.begun.fetch_add(1, Ordering::SeqCst);
        vec![spec("pod-a")]
    }
    fn abort_handover(&self) {
        self.aborted.fetch_add(1, Ordering::SeqCst);
    }
}

struct Running {
    pods: Arc<Pods>,
    drain: Drain,
    addr: std::net::SocketAddr,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn version(pid: u32) -> AgentVersion {
    AgentVersion {
        version: "0.1.0".into(),
        program_version: pid,
        pid,
    }
}

async fn running_agent() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join(SOCKET_NAME);
    let listeners = Arc::new(Listeners::default());
    let listener = listeners
        .node_tcp("metrics", "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (pods, drain) = (
        Arc::new(Pods::default()),
        Drain::new(Duration::from_secs(5)),
    );
    let giver = Giver {
        pods: pods.clone(),
        listeners,
        drain: drain.clone(),
        version: version(1),
        node_identity: Box::new(|| Some(NodeIdentityPem("node-identity-pem".into()))),
    };
    serve(&socket, giver).unwrap();
    Running {
        pods,
        drain,
        addr,
        socket,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_successor_gets_the_same_sockets_and_the_old_agent_drains() {
    let old = running_agent().await;
    let socket = old.socket.clone();
    let mut inherited = tokio::task::spawn_blocking(move || take_over(&socket, &version(2)))
        .await
        .unwrap()
        .expect("handed over");
    assert_eq!(inherited.predecessor, version(1));
    assert_eq!(inherited.pods, [spec("pod-a")]);
    assert_eq!(
        inherited.node_identity,
        Some(NodeIdentityPem("node-identity-pem".into()))
    );
    assert!(
        !format!("{inherited:?}").contains("node-identity-pem"),
        "the key is never printed"
    );
    assert!(
        !old.drain.is_draining(),
        "draining only once the successor serves"
    );

    let listeners = Listeners::inherit(std::mem::take(&mut inherited.listeners));
    let taken = listeners.node_tcp("metrics", old.addr).unwrap();
    assert_eq!(taken.local_addr().unwrap(), old.addr);
    let client = tokio::net::TcpStream::connect(old.addr).await.unwrap();
    let (_, peer) = taken.accept().await.unwrap();
    assert_eq!(peer, client.local_addr().unwrap());

    let predecessor = tokio::task::spawn_blocking(move || inherited.serving())
        .await
        .unwrap()
        .expect("the old agent confirms");
    assert_eq!(predecessor.drain_timeout, Duration::from_secs(5));
    assert!(old.drain.is_draining());
    assert_eq!(old.pods.aborted.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successor_that_gives_up_leaves_the_old_agent_serving() {
    let old = running_agent().await;
    let socket = old.socket.clone();
    let inherited = tokio::task::spawn_blocking(move || take_over(&socket, &version(2)))
        .await
        .unwrap()
        .expect("handed over");
    drop(inherited);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while old.pods.aborted.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handover not aborted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!old.drain.is_draining());
    // And a later successor can still take over.
    let socket = old.socket.clone();
    let again = tokio::task::spawn_blocking(move || take_over(&socket, &version(3)))
        .await
        .unwrap();
    assert!(again.is_some());
    assert_eq!(old.pods.begun.load(Ordering::SeqCst), 2);
}

#[test]
fn without_a_running_agent_there_is_nothing_to_take_over() {
    let dir = tempfile::tempdir().unwrap();
    assert!(take_over(&dir.path().join(SOCKET_NAME), &version(2)).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_strangers_on_the_socket_change_nothing() {
    let old = running_agent().await;
    // Not JSON, then a message out of turn.
    let raw = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        None,
    )
    .unwrap();
    rustix::net::connect(
        &raw,
        &rustix::net::SocketAddrUnix::new(&old.socket).unwrap(),
    )
    .unwrap();
    rustix::io::write(&raw, b"\x00\xffnot json").unwrap();
    drop(raw);
    let socket = old.socket.clone();
    tokio::task::spawn_blocking(move || {
        let out_of_turn = super::wire::Channel::connect(&socket).unwrap();
        out_of_turn.send(&Message::Serving, None).unwrap();
    })
    .await
    .unwrap();
    // A real successor still takes over (connections are handled one after another, so the
    // two above were dealt with first).
    let socket = old.socket.clone();
    let taken = tokio::task::spawn_blocking(move || take_over(&socket, &version(2)))
        .await
        .unwrap();
    assert!(taken.is_some());
    assert_eq!(
        old.pods.begun.load(Ordering::SeqCst),
        1,
        "only the real one began"
    );
    assert_eq!(old.pods.aborted.load(Ordering::SeqCst), 0);
    assert!(!old.drain.is_draining());
}
