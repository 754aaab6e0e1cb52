//! Accepts TCP connections within the connection limits, runs the TLS handshake off the accept
//! loop under a deadline (a slow or hostile client cannot stall others), and hands tonic streams
//! that carry the peer's verified SPIFFE ID and report the HTTP/2 limits their client hits.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ferrule_identity::tls::HandshakeReason;
use ferrule_identity::{CertInfo, SpiffeId};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::connections::{Connections, Cut, CutSignal, Registration};
use crate::limits::admission::{Admission, Admitted};
use crate::limits::h2_watch::{Reporter, Watched};
use crate::limits::{Listener, admit};
use crate::metrics::Metrics;

/// Handshaken connections waiting for tonic; bounds memory under a connection flood.
const ACCEPT_BACKLOG: usize = 256;

/// Who is on the other end of a control-plane connection; tonic puts it in request extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    /// The verified client SPIFFE ID, or `None` for a client without a certificate (join).
    pub id: Option<SpiffeId>,
    /// The serial of the client's certificate, for the per-call revocation check.
    pub serial: Option<String>,
}

/// A server-side TLS connection with its peer identity.
pub struct TlsConn {
    stream: Watched<TlsStream<TcpStream>>,
    peer: PeerInfo,
    /// For callers with a certificate: closes the connection when it is revoked or expires.
    cut: Option<(Registration, CutSignal)>,
    /// Set once cut: every later read and write fails too.
    closed: Option<Cut>,
    metrics: Arc<Metrics>,
    /// This connection's slot in the connection limits, freed when hyper drops it.
    _admitted: Admitted,
}

/// The limits of the gRPC listener's connections.
#[derive(Debug, Clone)]
pub struct ConnectionPolicy {
    pub handshake_timeout: Duration,
    /// The server's `http2.keepalive_timeout`, to tell its keepalive closes apart.
    pub keepalive_timeout: Duration,
    pub admission: Arc<Admission>,
}

impl TlsConn {
    /// An error once the connection has been cut, which makes hyper close it.
    fn check_cut(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let cut = match (self.closed, self.cut.as_mut()) {
            (Some(cut), _) => cut,
            (None, Some((_, signal))) => {
                let Poll::Ready(cut) = signal.as_mut().poll(cx) else {
                    return None;
                };
                self.closed = Some(cut);
                self.cut = None;
                self.metrics.connection_cut(cut);
                let id = self.peer.id.as_ref().map(|id| id.to_string());
                tracing::info!(remote = %self.peer.remote, ?id, reason = cut.as_str(), "closing control-plane connection");
                cut
            }
            (None, None) => return None,
        };
        Some(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("connection closed: {}", cut.as_str()),
        ))
    }
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.check_cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check_cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check_cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Streams handshaken connections from `listener` until the receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    metrics: Arc<Metrics>,
    connections: Arc<Connections>,
    policy: ConnectionPolicy,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let Some(admitted) = admit(Listener::Grpc, &policy.admission, remote, &metrics) else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let accepted = Accepted {
                tcp,
                remote,
                admitted,
            };
            tokio::spawn(handshake(
                acceptor.clone(),
                accepted,
                (policy.handshake_timeout, policy.keepalive_timeout),
                tx.clone(),
                metrics.clone(),
                connections.clone(),
            ));
        }
    });
    ReceiverStream::new(rx)
}

/// A TCP connection that got a slot.
struct Accepted {
    tcp: TcpStream,
    remote: SocketAddr,
    admitted: Admitted,
}

async fn handshake(
    acceptor: TlsAcceptor,
    accepted: Accepted,
    (timeout, keepalive_timeout): (Duration, Duration),
    tx: mpsc::Sender<io::Result<TlsConn>>,
    metrics: Arc<Metrics>,
    connections: Arc<Connections>,
) {
    let Accepted {
        tcp,
        remote,
        admitted,
    } = accepted;
    let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let reason = HandshakeReason::of_io(&e);
            metrics.handshake_failed(reason);
            let reason = reason.as_str();
            tracing::info!(%remote, reason, error = %e, "control-plane TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics.handshake_failed(HandshakeReason::Other);
            metrics.limit_hit(Listener::Grpc, "handshake_timeout");
            tracing::info!(%remote, reason = "timeout", "control-plane TLS handshake timed out");
            return;
        }
    };
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| CertInfo::parse(leaf).ok());
    let id = leaf.as_ref().and_then(|info| info.spiffe_id().ok());
    let serial = leaf.as_ref().map(|info| info.serial.clone());
    let cut = leaf
        .zip(id.clone())
        .map(|(info, id)| connections.register(id, info.serial, info.not_after));
    let peer = PeerInfo { remote, id, serial };
    let reporter = Reporter {
        metrics: metrics.clone(),
        listener: Listener::Grpc,
        remote,
        keepalive_timeout,
    };
    let conn = TlsConn {
        stream: Watched::new(stream, reporter),
        peer,
        cut,
        closed: None,
        metrics,
        _admitted: admitted,
    };
    let _ = tx.send(Ok(conn)).await;
}
