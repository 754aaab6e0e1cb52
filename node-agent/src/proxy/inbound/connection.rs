//! One inbound TLS connection: handshake, peer identity, then its HTTP/2 streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrule_identity::{CertInfo, VerifyError};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use super::resets::PeerResets;
use super::{InboundTarget, Peer};
use crate::config::Limits;
use crate::proxy::HandshakeError;
use crate::proxy::settings::{self, KeepaliveFailure};
use crate::telemetry::Limit;

type Tls = TlsStream<TcpStream>;

pub(super) async fn serve(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    target: Arc<dyn InboundTarget>,
    limits: Arc<Limits>,
    draining: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    // One budget for the TLS and the HTTP/2 handshakes: a client that trickles either holds a
    // socket and a task for at most this long.
    let deadline = Instant::now() + limits.handshake_timeout;
    let (tls, peer) = match handshake(tcp, addr, acceptor, deadline, limits.handshake_timeout).await
    {
        Ok(done) => done,
        Err(e) => {
            warn!(peer_addr = %addr, reason = e.reason().as_str(), error = %e, "HBONE TLS handshake refused");
            if matches!(e, HandshakeError::Timeout(_)) {
                target.limit_hit(Limit::HandshakeTimeout);
            }
            target.handshake_failed(addr, &e);
            return;
        }
    };
    let handshake = settings::server(&limits.http2).handshake::<_, bytes::Bytes>(tls);
    let conn = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return debug!(peer_addr = %addr, peer = %peer.id, error = %e, "HTTP/2 handshake failed");
        }
        Err(_) => {
            target.limit_hit(Limit::HandshakeTimeout);
            return warn!(peer_addr = %addr, peer = %peer.id, limit = Limit::HandshakeTimeout.as_str(), "HTTP/2 handshake timed out; closing");
        }
    };
    debug!(peer_addr = %addr, peer = %peer.id, "HBONE connection open");
    let peer = Arc::new(peer);
    let streams = Streams {
        peer: peer.clone(),
        addr,
        target,
        resets: Arc::new(PeerResets::new(limits.http2.max_peer_reset_streams)),
    };
    streams.accept(conn, &limits, draining).await;
    debug!(peer_addr = %addr, peer = %peer.id, "HBONE connection closed");
}

async fn handshake(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    deadline: Instant,
    budget: Duration,
) -> Result<(Tls, Peer), HandshakeError> {
    let mut tls = tokio::time::timeout_at(deadline, acceptor.accept(tcp))
        .await
        .map_err(|_| HandshakeError::Timeout(budget))??;
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

/// One connection's streams and what they share.
struct Streams {
    peer: Arc<Peer>,
    addr: SocketAddr,
    target: Arc<dyn InboundTarget>,
    resets: Arc<PeerResets>,
}

impl Streams {
    async fn accept(
        &self,
        mut conn: h2::server::Connection<Tls, bytes::Bytes>,
        limits: &Limits,
        mut draining: watch::Receiver<bool>,
    ) {
        let (peer, addr) = (&self.peer, self.addr);
        let ping_pong = conn.ping_pong().expect("taken only here");
        let h2 = &limits.http2;
        let keepalive = settings::keepalive(ping_pong, h2.keepalive_interval, h2.keepalive_timeout);
        tokio::pin!(keepalive);
        let mut revoked = self.target.peer_revoked(peer);
        let mut goaway_sent = false;
        let mut calmed = false;
        loop {
            tokio::select! {
                request = conn.accept() => match request {
                    Some(Ok((request, respond))) => {
                        let handle = super::connect::handle(request, respond, peer.clone(), self.target.clone(), self.resets.clone());
                        tokio::spawn(handle);
                    }
                    Some(Err(e)) => return self.failed(&e),
                    None => return,
                },
                // Streams already open keep running; `accept` returns `None` once they are done.
                _ = draining.wait_for(|d| *d), if !goaway_sent => {
                    goaway_sent = true;
                    conn.graceful_shutdown();
                }
                // Keep polling `accept` so the GOAWAY goes out; it then ends the connection.
                () = self.resets.exceeded(), if !calmed => {
                    calmed = true;
                    warn!(peer_addr = %addr, peer = %peer.id, limit = Limit::PeerResetStreams.as_str(), "HBONE peer resets too many streams; closing with GOAWAY ENHANCE_YOUR_CALM");
                    self.target.limit_hit(Limit::PeerResetStreams);
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                }
                failure = &mut keepalive => {
                    if matches!(failure, KeepaliveFailure::Timeout(_)) {
                        self.target.limit_hit(Limit::KeepaliveTimeout);
                    }
                    return warn!(peer_addr = %addr, peer = %peer.id, %failure, "HBONE peer stopped answering; closing");
                }
                // Dropping the connection fails every stream on it: the tunnel is cut.
                reason = &mut revoked => {
                    return warn!(peer_addr = %addr, peer = %peer.id, serial = %peer.serial, %reason, "closing HBONE tunnel: peer revoked");
                }
            }
        }
    }

    /// The connection failed; h2's own limits end it with GOAWAY `ENHANCE_YOUR_CALM`.
    fn failed(&self, e: &h2::Error) {
        let (peer, addr) = (&self.peer, self.addr);
        if enhance_your_calm(e) {
            let limit = Limit::Http2Calm;
            warn!(peer_addr = %addr, peer = %peer.id, limit = limit.as_str(), error = %e, "HBONE peer hit an HTTP/2 limit (too many resets or frames); closed with GOAWAY ENHANCE_YOUR_CALM");
            self.target.limit_hit(limit);
        } else {
            debug!(peer_addr = %addr, peer = %peer.id, error = %e, "HBONE connection failed");
        }
    }
}

/// Whether h2 itself ended the connection with GOAWAY `ENHANCE_YOUR_CALM` (one of its limits;
/// it does not tell the server which).
fn enhance_your_calm(e: &h2::Error) -> bool {
    e.is_go_away() && e.is_library() && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)
}
