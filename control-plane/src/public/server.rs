//! The accept loop: one task per connection (TLS handshake, then HTTP/1.1 or HTTP/2), bounded in
//! number (in total and per source), time and HTTP/2 abuse by `limits:`, so a slow, hostile or
//! garbage-sending client affects only itself.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{PublicDocuments, routes};
use crate::config::LimitsConfig;
use crate::limits::admission::{Admission, Admitted};
use crate::limits::h2_watch::{Reporter, Watched};
use crate::limits::{Listener, admit};
use crate::metrics::Metrics;

/// Connections are closed (gracefully) after this long, so idle keep-alives cannot pile up.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// How long shutdown waits for requests in flight before dropping their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Requests on this endpoint are tiny; no client needs more at once on one connection.
const MAX_H2_STREAMS: u32 = 32;

/// The public listener's share of `limits:` and where to count what it refuses.
#[derive(Debug, Clone)]
pub struct PublicLimits {
    pub limits: LimitsConfig,
    pub metrics: Arc<Metrics>,
}

/// Serves [`PublicDocuments`] over HTTPS on `listener` until `shutdown` completes; every request
/// gets the latest value of `documents`. Returns once open connections have finished (or after a
/// short grace period).
pub async fn serve_public(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    documents: watch::Receiver<Arc<PublicDocuments>>,
    limits: PublicLimits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let admission = Admission::new(limits.limits.public_connections);
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "public CRL and bundle endpoint serving");
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "public endpoint connection task panicked");
                }
            }
            accepted = listener.accept() => {
                let (tcp, remote) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "public endpoint accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(admitted) = admit(Listener::Public, &admission, remote, &limits.metrics) else {
                    continue;
                };
                let conn = Connection {
                    acceptor: acceptor.clone(),
                    remote,
                    documents: documents.clone(),
                    closing: closing.clone(),
                    limits: limits.clone(),
                    _admitted: admitted,
                };
                connections.spawn(conn.run(tcp));
            }
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "public endpoint dropping connections still open after the grace period"
        );
        connections.shutdown().await;
    }
}

struct Connection {
    acceptor: TlsAcceptor,
    remote: SocketAddr,
    documents: watch::Receiver<Arc<PublicDocuments>>,
    closing: watch::Receiver<bool>,
    limits: PublicLimits,
    /// This connection's slot, freed with the connection.
    _admitted: Admitted,
}

impl Connection {
    fn hit(&self, limit: &'static str) {
        self.limits.metrics.limit_hit(Listener::Public, limit);
    }

    async fn run(mut self, tcp: TcpStream) {
        if let Some(tls) = self.handshake(tcp).await {
            self.serve(tls).await;
        }
    }

    /// `None` when the handshake failed (logged here) or the server is shutting down.
    async fn handshake(&mut self, tcp: TcpStream) -> Option<TlsStream<TcpStream>> {
        let remote = self.remote;
        let _ = tcp.set_nodelay(true);
        let timeout = self.limits.limits.handshake_timeout;
        let handshake = tokio::time::timeout(timeout, self.acceptor.accept(tcp));
        let done = tokio::select! {
            done = handshake => done,
            _ = self.closing.wait_for(|closing| *closing) => return None,
        };
        match done {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                match handshake_failure(&e) {
                    // A TCP health check connects and closes without a word: not worth a line.
                    reason @ ("eof" | "reset") => {
                        tracing::debug!(%remote, reason, error = %e, "public endpoint TLS handshake failed");
                    }
                    reason => {
                        tracing::info!(%remote, reason, error = %e, "public endpoint TLS handshake failed");
                    }
                }
                None
            }
            Err(_) => {
                self.hit("handshake_timeout");
                tracing::info!(%remote, reason = "handshake_timeout", "public endpoint TLS handshake timed out");
                None
            }
        }
    }

    /// HTTP/1.1 or HTTP/2 until the client leaves, the connection gets too old, or shutdown.
    async fn serve(self, tls: TlsStream<TcpStream>) {
        let documents = self.documents.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let docs = documents.borrow().clone();
            let response = routes::respond(
                request.method(),
                request.uri().path(),
                &docs,
                SystemTime::now(),
            );
            async move { Ok::<_, Infallible>(response) }
        });
        let builder = http_builder(&self.limits.limits);
        // hyper reports an HTTP/2 keepalive timeout as a timeout too; the watch counts those.
        let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let reporter = Reporter {
            metrics: self.limits.metrics.clone(),
            listener: Listener::Public,
            remote: self.remote,
            keepalive_timeout: self.limits.limits.http2.keepalive_timeout,
        };
        let conn = builder.serve_connection(TokioIo::new(Watched::new(tls, reporter)), service);
        tokio::pin!(conn);
        let mut closing = self.closing.clone();
        let stop = async {
            tokio::select! {
                _ = closing.wait_for(|closing| *closing) => {}
                () = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
            }
        };
        let served = tokio::select! {
            served = conn.as_mut() => served,
            () = stop => {
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
                    Ok(served) => served,
                    Err(_) => return,
                }
            }
        };
        if let Err(e) = served {
            let remote = self.remote;
            let reason = http_failure(e.as_ref());
            if reason == "timeout" && !http2 {
                self.hit("header_read_timeout");
            }
            match reason {
                // Clients going away mid-request are routine; speaking garbage or stalling is not.
                "bad_request" | "timeout" => {
                    tracing::info!(%remote, reason, error = %e, "public endpoint HTTP error");
                }
                _ => {
                    tracing::debug!(%remote, reason, error = %e, "public endpoint connection ended");
                }
            }
        }
    }
}

/// HTTP/1.1 or HTTP/2 (by ALPN or sniffing) with the limits of `limits:`.
fn http_builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let http2 = limits.http2;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS.min(http2.max_concurrent_streams))
        .max_pending_accept_reset_streams(http2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(http2.max_local_error_reset_streams)
        .max_header_list_size(http2.max_header_list_size)
        .keep_alive_interval(http2.keepalive_interval)
        .keep_alive_timeout(http2.keepalive_timeout);
    builder
}

/// A short, stable label for logs and metrics.
fn handshake_failure(e: &io::Error) -> &'static str {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        // Not TLS at all (plain HTTP, a port scanner, random bytes) or a corrupt handshake.
        Some(rustls::Error::InvalidMessage(_)) => "malformed",
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible",
        Some(rustls::Error::NoApplicationProtocol) => "no_common_alpn",
        Some(rustls::Error::AlertReceived(_)) => "alert_received",
        Some(_) => "tls_error",
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof => "eof",
            io::ErrorKind::ConnectionReset => "reset",
            _ => "io_error",
        },
    }
}

fn http_failure(e: &(dyn std::error::Error + 'static)) -> &'static str {
    match e.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_parse() || e.is_parse_too_large() => "bad_request",
        Some(e) if e.is_timeout() => "timeout",
        Some(e) if e.is_incomplete_message() => "incomplete",
        Some(_) => "http_error",
        None => "other",
    }
}
