//! HBONE, the tunnel format of Istio ambient, so that a ztunnel peer can interoperate: TCP
//! connections carried as HTTP/2 `CONNECT` streams (`:authority` = original destination
//! `ip:port`) to port 15008, over mutual TLS 1.3 with SPIFFE identities and ALPN `h2`.
//!
//! - [`serve_inbound`] terminates tunnels: it learns the peer's identity from its verified client
//!   certificate and asks an [`InboundTarget`] (authorization, then a socket to the app) per stream.
//! - [`TunnelPool`] originates them: one TLS connection per (source identity, destination
//!   identity, destination address) carries many streams.
//! - [`relay`] copies between a stream and a TCP connection, both ways, with half-close and with
//!   HTTP/2 flow control as the backpressure.

#[cfg(any(test, feature = "testing"))]
pub mod hostile;
mod inbound;
mod outbound;
mod relay;
mod settings;
mod stream;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ferrule_identity::VerifyError;
use ferrule_identity::tls::{HandshakeReason, verify_error_of};
use http::StatusCode;

pub use inbound::{
    Admitted, CONFIG_NOT_READY, Finished, InboundRefusal, InboundTarget, Peer, Revoked, Withdrawn,
    connect_destination, serve_inbound,
};
pub use outbound::{PoolConfig, TunnelKey, TunnelPool};
pub use relay::{Relayed, relay, relay_until};
pub use stream::HboneStream;
use stream::StreamSlot;

/// The HBONE port: where tunnels are accepted, on every pod IP.
pub const HBONE_PORT: u16 = 15008;
/// The ALPN protocol both ends must speak.
pub const ALPN_H2: &[u8] = b"h2";

/// Why a TLS handshake failed, with a stable label for logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("peer certificate refused: {0}")]
    Certificate(VerifyError),
    #[error("{0}")]
    Tls(rustls::Error),
    #[error("{0}")]
    Io(io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl HandshakeError {
    /// The fixed reason label of metrics, logs and `ferrule explain`.
    pub fn reason(&self) -> HandshakeReason {
        match self {
            Self::Certificate(e) => HandshakeReason::of_verify(e),
            Self::Tls(e) => HandshakeReason::of_tls(e),
            Self::Io(_) | Self::Timeout(_) => HandshakeReason::Other,
        }
    }
}

impl From<io::Error> for HandshakeError {
    /// tokio-rustls hands back rustls' error inside an `io::Error`; unwrap it so a certificate
    /// problem keeps its typed reason.
    fn from(err: io::Error) -> Self {
        let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        else {
            return Self::Io(err);
        };
        match verify_error_of(tls) {
            Some(verify) => Self::Certificate(verify),
            None => Self::Tls(tls.clone()),
        }
    }
}

/// Why opening an outbound tunnel stream failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("connecting to {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("TLS handshake with {address}: {source}")]
    Handshake {
        address: SocketAddr,
        source: HandshakeError,
    },
    #[error("HBONE tunnel to {address}: {source}")]
    Http2 {
        address: SocketAddr,
        source: h2::Error,
    },
    #[error("{address} did not answer within {after:?}")]
    Timeout {
        address: SocketAddr,
        after: Duration,
    },
    #[error("{address} answered CONNECT {authority} with {status}")]
    Status {
        address: SocketAddr,
        authority: SocketAddr,
        status: StatusCode,
    },
    #[error("the dial to {address} this stream waited for failed: {reason}")]
    DialFailed { address: SocketAddr, reason: String },
    #[error("the tunnel to {address} was closed while connecting (identity closed)")]
    Closed { address: SocketAddr },
    #[error("{address} allows no streams")]
    NoStreams { address: SocketAddr },
    #[error("a certificate for {got} was given for a tunnel from {expected}")]
    WrongSource { expected: String, got: String },
}

impl OutboundError {
    /// The HTTP status of a refused `CONNECT` (401 policy, 503 unreachable, 400 bad request).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
