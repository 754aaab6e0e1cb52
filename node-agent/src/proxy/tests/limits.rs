//! Hostile clients against the HBONE server: each is cut by its limit, the limit is reported,
//! and the server keeps serving well-behaved clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use h2::Reason;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::refusals::assert_serving;
use super::{Direct, Mesh, SERVER, echo_app, id};
use crate::config::Limits;
use crate::limits::{CapKey, ConnectionCaps};
use crate::proxy::{Admitted, InboundRefusal, InboundTarget, Peer, hostile};
use crate::telemetry::Limit;

const WAIT: Duration = Duration::from_secs(10);

/// Connects like [`Direct`], admits under `caps` by source address, and records limit hits.
struct Watched {
    caps: Arc<ConnectionCaps>,
    hits: Arc<Mutex<Vec<Limit>>>,
}

#[tonic::async_trait]
impl InboundTarget for Watched {
    async fn connect(&self, peer: &Peer, dst: SocketAddr) -> Result<Admitted, InboundRefusal> {
        Direct::default().connect(peer, dst).await
    }

    fn admit(&self, from: SocketAddr) -> Result<Option<Box<dyn std::any::Any + Send>>, Limit> {
        Ok(Some(Box::new(self.caps.admit(CapKey::Source(from.ip()))?)))
    }

    fn limit_hit(&self, limit: Limit) {
        self.hits.lock().unwrap().push(limit);
    }
}

/// A server with `limits` whose limit hits land in the returned list.
async fn watched(mesh: &Mesh, limits: Limits) -> (super::Server, Arc<Mutex<Vec<Limit>>>) {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let target = Watched {
        caps: ConnectionCaps::new(&limits),
        hits: hits.clone(),
    };
    (mesh.server_with(target, limits).await, hits)
}

async fn hostile_tls(mesh: &Mesh, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    hostile::tls(tcp, &mesh.client, &mesh.bundle, &id(SERVER))
        .await
        .expect("a valid client certificate is accepted")
}

#[tokio::test]
async fn rapid_reset_is_closed_with_enhance_your_calm_and_counted() {
    let mesh = Mesh::new();
    let limits = Limits::default();
    let burst = limits.http2.max_pending_reset_streams as u32 * 10;
    let (server, hits) = watched(&mesh, limits).await;
    let app = echo_app().await;
    let tls = hostile_tls(&mesh, server.addr).await;
    let ended = tokio::time::timeout(WAIT, hostile::rapid_reset(tls, app, burst))
        .await
        .expect("the server let rapid reset run on")
        .unwrap();
    assert_eq!(ended.goaway, Some(Reason::ENHANCE_YOUR_CALM), "{ended:?}");
    assert_eq!(hits.lock().unwrap().clone(), vec![Limit::Http2Calm]);
    assert_serving(&mesh, server.addr).await;
}

#[tokio::test]
async fn paced_rapid_reset_is_cut_by_the_peer_reset_budget() {
    let mesh = Mesh::new();
    let limits = Limits::default();
    let budget = limits.http2.max_peer_reset_streams;
    let (server, hits) = watched(&mesh, limits).await;
    let app = echo_app().await;
    let tls = hostile_tls(&mesh, server.addr).await;
    let attempted = budget * 100;
    let ended = tokio::time::timeout(WAIT * 2, hostile::paced_rapid_reset(tls, app, attempted))
        .await
        .expect("the server let paced rapid reset run on")
        .unwrap();
    assert!(
        ended.streams < attempted,
        "the connection was not cut: {ended:?}"
    );
    assert_eq!(hits.lock().unwrap().clone(), vec![Limit::PeerResetStreams]);
    assert_serving(&mesh, server.addr).await;
}

#[tokio::test]
async fn made_you_reset_is_closed_with_enhance_your_calm_and_counted() {
    let mesh = Mesh::new();
    let limits = Limits::default();
    let burst = limits.http2.max_local_reset_streams as u32 * 3;
    let (server, hits) = watched(&mesh, limits).await;
    let app = echo_app().await;
    let tls = hostile_tls(&mesh, server.addr).await;
    let ended = tokio::time::timeout(WAIT, hostile::made_you_reset(tls, app, burst))
        .await
        .expect("the server let MadeYouReset run on")
        .unwrap();
    assert_eq!(ended.goaway, Some(Reason::ENHANCE_YOUR_CALM), "{ended:?}");
    assert_eq!(hits.lock().unwrap().clone(), vec![Limit::Http2Calm]);
    assert_serving(&mesh, server.addr).await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_at_the_handshake_timeout() {
    let mesh = Mesh::new();
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (server, hits) = watched(&mesh, limits).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, silent.read(&mut byte))
        .await
        .expect("a silent client was held past the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(hits.lock().unwrap().clone(), vec![Limit::HandshakeTimeout]);
    assert_serving(&mesh, server.addr).await;
}

#[tokio::test]
async fn connections_beyond_the_per_source_cap_are_reset() {
    let mesh = Mesh::new();
    let limits = Limits {
        max_connections_per_source: 2,
        ..Limits::default()
    };
    let (server, hits) = watched(&mesh, limits).await;
    let held = [
        TcpStream::connect(server.addr).await.unwrap(),
        TcpStream::connect(server.addr).await.unwrap(),
    ];
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, third.read(&mut byte))
        .await
        .unwrap();
    assert!(
        read.as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "beyond the cap: {read:?}"
    );
    assert_eq!(
        hits.lock().unwrap().clone(),
        vec![Limit::ConnectionsPerSource]
    );
    drop(held);
    // The slots come back (the server sees the closes asynchronously).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_serving(&mesh, server.addr).await;
}
