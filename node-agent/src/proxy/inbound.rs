//! The HBONE server: mutual TLS, then one `CONNECT` stream per tunnelled connection.

mod connect;
mod connection;
mod resets;

pub use connect::connect_destination;

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferrule_identity::SpiffeId;
use http::StatusCode;

use super::Relayed;
use crate::config::Limits;
use crate::telemetry::Limit;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// Pause after a failed `accept` (out of file descriptors, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The client of a tunnel, from its verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: SpiffeId,
    pub serial: String,
    /// The remote end of the tunnel (the source node).
    pub address: SocketAddr,
}

/// Why a connection allowed earlier was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawn {
    /// The peer's certificate or identity was revoked.
    Revoked(String),
    /// A policy change no longer allows it.
    Policy(String),
    /// The agent drained (it handed over or stopped) and its drain timeout passed.
    Drain(String),
}

impl std::fmt::Display for Withdrawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Revoked(why) | Self::Policy(why) | Self::Drain(why) => f.write_str(why),
        }
    }
}

/// Completes, with the reason, when what was allowed no longer is (revocation, policy change).
pub type Revoked = Pin<Box<dyn Future<Output = Withdrawn> + Send>>;

/// A `CONNECT` the target accepted: the socket to the app, the decision and rule for the access
/// log, and the future that ends the connection when it stops being allowed.
pub struct Admitted {
    pub tcp: TcpStream,
    pub decision: String,
    pub rule: String,
    pub until: Revoked,
    /// Held for as long as the connection lasts (e.g. its entry in a table of connections).
    pub keep: Option<Box<dyn std::any::Any + Send>>,
}

/// How an admitted connection went, for the target's access log and metrics.
pub struct Finished<'a> {
    pub destination: SocketAddr,
    pub decision: &'a str,
    pub rule: &'a str,
    pub relayed: &'a Relayed,
    pub cut: Option<&'a Withdrawn>,
    pub duration: Duration,
}

/// Decides a tunnelled connection and, when allowed, opens it to the app.
#[tonic::async_trait]
pub trait InboundTarget: Send + Sync + 'static {
    /// `dst` is the `:authority` of the `CONNECT`.
    async fn connect(&self, peer: &Peer, dst: SocketAddr) -> Result<Admitted, InboundRefusal>;

    /// Completes when the peer's certificate is revoked: the whole tunnel is then closed.
    fn peer_revoked(&self, _peer: &Peer) -> Revoked {
        Box::pin(std::future::pending())
    }

    /// An admitted connection ended.
    fn finished(&self, _peer: &Peer, _how: &Finished<'_>) {}

    /// A TLS handshake failed; no peer identity is known.
    fn handshake_failed(&self, _tunnel_peer: SocketAddr, _error: &super::HandshakeError) {}

    /// A slot for a new connection from `tunnel_peer`, held while it lasts; or the limit that
    /// refuses it.
    fn admit(&self, _tunnel_peer: SocketAddr) -> Result<Option<Box<dyn Any + Send>>, Limit> {
        Ok(None)
    }

    /// A connection was refused or cut by `limit` (already logged).
    fn limit_hit(&self, _limit: Limit) {}
}

/// The reason (and `ferrule_authz_decisions_total` policy label) of streams refused before the
/// first configuration version.
pub const CONFIG_NOT_READY: &str = "config_not_ready";

/// Why a `CONNECT` was not opened; each maps to the status ztunnel answers with.
#[derive(Debug, thiserror::Error)]
pub enum InboundRefusal {
    #[error("denied by policy: {0}")]
    Forbidden(String),
    #[error("destination unreachable: {0}")]
    Unreachable(#[from] io::Error),
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The agent has not applied a configuration version yet: it fails closed.
    #[error(
        "no mesh configuration applied yet (config_not_ready): the destination's agent admits \
         no stream until the control plane's first version arrives"
    )]
    ConfigNotReady,
}

impl InboundRefusal {
    /// ztunnel answers a policy denial with 401 (not 403); peers may key on it, so we match.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Forbidden(_) => StatusCode::UNAUTHORIZED,
            Self::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::ConfigNotReady => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "forbidden",
            Self::Unreachable(_) => "unreachable",
            Self::BadRequest(_) => "bad_request",
            Self::ConfigNotReady => CONFIG_NOT_READY,
        }
    }
}

/// Serves HBONE on `listener` until `shutdown` completes, then stops accepting, asks every
/// connection to finish (GOAWAY) and waits up to `drain_timeout` for their streams.
pub async fn serve_inbound(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    target: Arc<dyn InboundTarget>,
    limits: Arc<Limits>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    let Some(admitted) = admit(target.as_ref(), &tcp, addr) else { continue };
                    let conn = connection::serve(tcp, addr, acceptor.clone(), target.clone(), limits.clone(), draining.clone());
                    connections.spawn(async move {
                        conn.await;
                        drop(admitted);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "HBONE accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow with the node's uptime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = drain.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        info!(
            open = connections.len(),
            "HBONE drain timed out; closing the rest"
        );
    }
}

/// The connection's slot, or `None` after refusing it with a TCP reset (so the peer sees the
/// refusal at once, and no socket lingers in TIME_WAIT on our side).
fn admit(
    target: &dyn InboundTarget,
    tcp: &TcpStream,
    addr: SocketAddr,
) -> Option<Option<Box<dyn Any + Send>>> {
    match target.admit(addr) {
        Ok(slot) => Some(slot),
        Err(limit) => {
            tracing::debug!(peer_addr = %addr, limit = limit.as_str(), "HBONE connection refused: limit reached");
            target.limit_hit(limit);
            let _ = tcp.set_zero_linger();
            None
        }
    }
}
