//! One inbound TLS connection: handshake, peer identity, then its HTTP/2 streams.

use std::net::SocketAddr;
use std::sync::Arc;

use ferrule_identity::{CertInfo, VerifyError};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use super::{InboundTarget, Peer};
use crate::proxy::{HANDSHAKE_TIMEOUT, HandshakeError, settings};

type Tls = TlsStream<TcpStream>;

pub(super) async fn serve(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    target: Arc<dyn InboundTarget>,
    draining: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let (tls, peer) = match handshake(tcp, addr, acceptor).await {
        Ok(done) => done,
        Err(e) => {
            warn!(peer_addr = %addr, reason = e.reason().as_str(), error = %e, "HBONE TLS handshake refused");
            target.handshake_failed(addr, &e);
            return;
        }
    };
    let handshake = settings::server().handshake::<_, bytes::Bytes>(tls);
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return debug!(peer_addr = %addr, peer = %peer.id, error = %e, "HTTP/2 handshake failed");
        }
        Err(_) => return debug!(peer_addr = %addr, peer = %peer.id, "HTTP/2 handshake timed out"),
    };
    debug!(peer_addr = %addr, peer = %peer.id, "HBONE connection open");
    let peer = Arc::new(peer);
    accept_streams(conn, &peer, addr, target, draining).await;
    debug!(peer_addr = %addr, peer = %peer.id, "HBONE connection closed");
}

async fn handshake(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
) -> Result<(Tls, Peer), HandshakeError> {
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| HandshakeError::Timeout(HANDSHAKE_TIMEOUT))??;
    tls.get_mut()
        .1
        .set_buffer_limit(Some(settings::TLS_SEND_BUFFER));
    let peer = peer_id(&tls, addr).map_err(HandshakeError::Certificate)?;
    Ok((tls, peer))
}

/// The identity in the client certificate the verifier already accepted.
fn peer_id(tls: &Tls, address: SocketAddr) -> Result<Peer, VerifyError> {
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(VerifyError::NoCertificate)?;
    let info = CertInfo::parse(leaf)?;
    Ok(Peer {
        id: info.spiffe_id()?,
        serial: info.serial,
        address,
    })
}

async fn accept_streams(
    mut conn: h2::server::Connection<Tls, bytes::Bytes>,
    peer: &Arc<Peer>,
    addr: SocketAddr,
    target: Arc<dyn InboundTarget>,
    mut draining: watch::Receiver<bool>,
) {
    let keepalive = settings::keepalive(conn.ping_pong().expect("taken only here"));
    tokio::pin!(keepalive);
    let mut revoked = target.peer_revoked(peer);
    let peer_id = &peer.id;
    let mut goaway_sent = false;
    loop {
        tokio::select! {
            request = conn.accept() => match request {
                Some(Ok((request, respond))) => {
                    tokio::spawn(super::connect::handle(request, respond, peer.clone(), target.clone()));
                }
                Some(Err(e)) => return debug!(peer_addr = %addr, peer = %peer_id, error = %e, "HBONE connection failed"),
                None => return,
            },
            // Streams already open keep running; `accept` returns `None` once they are done.
            _ = draining.wait_for(|d| *d), if !goaway_sent => {
                goaway_sent = true;
                conn.graceful_shutdown();
            }
            failure = &mut keepalive => {
                return warn!(peer_addr = %addr, peer = %peer_id, %failure, "HBONE peer stopped answering; closing");
            }
            // Dropping the connection fails every stream on it: the tunnel is cut.
            reason = &mut revoked => {
                return warn!(peer_addr = %addr, peer = %peer_id, serial = %peer.serial, %reason, "closing HBONE tunnel: peer revoked");
            }
        }
    }
}
