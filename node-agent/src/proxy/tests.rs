//! A mesh in one process on 127.0.0.1: a test CA, an HBONE server in front of an echo app, and
//! the pool as client.

mod limits;
mod refusals;
mod tunnels;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrule_identity::testing::TestCa;
use ferrule_identity::tls::{self, CertSlot, SpiffeClientVerifier};
use ferrule_identity::{SharedBundle, SpiffeId};
use rcgen::KeyPair;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{
    ALPN_H2, Admitted, InboundRefusal, InboundTarget, Peer, PoolConfig, TunnelKey, TunnelPool,
    serve_inbound,
};
use crate::config::Limits;
use crate::identity::{SignedSvid, WorkloadCert};

const CLIENT: &str = "spiffe://example.org/ns/a/sa/client";
const SERVER: &str = "spiffe://example.org/ns/b/sa/server";

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

struct Mesh {
    ca: TestCa,
    bundle: SharedBundle,
    client: WorkloadCert,
    pool: TunnelPool,
}

impl Mesh {
    fn new() -> Self {
        let ca = TestCa::new("example.org");
        let bundle = SharedBundle::new(ca.ca.bundle().clone());
        let client = issue(&ca, CLIENT).0;
        let pool = TunnelPool::new(PoolConfig::default());
        Self {
            ca,
            bundle,
            client,
            pool,
        }
    }

    /// An HBONE server presenting the `SERVER` identity, in front of `target`.
    async fn server(&self, target: impl InboundTarget) -> Server {
        self.server_with(target, Limits::default()).await
    }

    /// [`Self::server`] with `limits`.
    async fn server_with(&self, target: impl InboundTarget, limits: Limits) -> Server {
        let certs = Arc::new(CertSlot::new(issue(&self.ca, SERVER).0.certified));
        let config = tls::server_config(
            certs,
            SpiffeClientVerifier::required(self.bundle.clone()),
            &[ALPN_H2],
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve_inbound(
            listener,
            Arc::new(config),
            Arc::new(target),
            Arc::new(limits),
            shutdown,
            Duration::from_secs(10),
        ));
        Server { addr, stop, task }
    }

    fn key(&self, address: SocketAddr) -> TunnelKey {
        TunnelKey {
            source: id(CLIENT),
            destination: id(SERVER),
            address,
        }
    }
}

/// A workload certificate for `name` and its key (kept for tools that need it as a file).
fn issue(ca: &TestCa, name: &str) -> (WorkloadCert, KeyPair) {
    let (svid, key) = ca
        .ca
        .issue_with_new_key(&id(name), Duration::from_secs(600), &[], &[])
        .unwrap();
    let signed = SignedSvid {
        chain: svid.full_chain(),
        serial: svid.serial,
        not_before: svid.not_before,
        not_after: svid.not_after,
        bundle_roots: Vec::new(),
    };
    let cert = WorkloadCert::new(&id(name), &key, signed).unwrap();
    (cert, key)
}

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The destination app: echoes each connection and half-closes once its input ends.
async fn echo_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = conn.into_split();
                if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
                    let _ = wr.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects every stream to its `:authority`, except for a denied peer.
#[derive(Default)]
struct Direct {
    deny: Option<SpiffeId>,
}

#[tonic::async_trait]
impl InboundTarget for Direct {
    async fn connect(&self, peer: &Peer, dst: SocketAddr) -> Result<Admitted, InboundRefusal> {
        if self.deny.as_ref() == Some(&peer.id) {
            return Err(InboundRefusal::Forbidden(format!(
                "{} may not reach {dst}",
                peer.id
            )));
        }
        Ok(Admitted {
            tcp: TcpStream::connect(dst).await?,
            decision: "allow (test)".into(),
            rule: "test".into(),
            keep: None,
            until: Box::pin(std::future::pending()),
        })
    }
}

/// A plain TCP relay to `to` that counts the connections it accepts.
async fn counting_relay(to: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut upstream = TcpStream::connect(to).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
            });
        }
    });
    (addr, count)
}
