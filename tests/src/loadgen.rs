//! `ferrule-loadgen`: the traffic an unmodified app makes, run inside pods by `bench datapath`.
//! Servers take an already-bound listener; each client mode returns a report whose `Display` is
//! one line of `key=value` fields, which [`field`] reads back, so the binary, the benchmark and
//! the loopback tests share one format. Every mode checks the bytes it gets back: a benchmark
//! that counts corrupted or lost data as throughput would flatter a broken data path.

mod bulk;
mod connections;
mod echo;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

pub use bulk::{BULK_BUFFER, BulkReport, sink, source};
pub use connections::{CONNECT_REQUEST, ConnectReport, HoldReport, connect_rate, hold};
pub use echo::{RrReport, echo, rr};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("bulk data corrupted at stream offset {offset}")]
    Corrupted { offset: u64 },
    #[error("sent {sent} bytes but the sink confirmed {confirmed}")]
    Lost { sent: u64, confirmed: u64 },
    #[error("the echo differs from what was sent")]
    EchoMismatch,
}

/// Wraps an I/O error with what was being done, for `map_err`.
fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// A listener on all addresses of the (pod's) network namespace. The backlog is large because
/// `hold` and `connect-rate` open connections faster than a default backlog of 128 drains.
pub fn listen(port: u16) -> Result<TcpListener, Error> {
    let socket = TcpSocket::new_v4().map_err(io("creating a socket"))?;
    socket
        .set_reuseaddr(true)
        .map_err(io("setting SO_REUSEADDR"))?;
    socket
        .bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .map_err(io("binding"))?;
    socket.listen(4096).map_err(io("listening"))
}

/// The value of `key=` in a report line: `field("rr p50_us=31.5", "p50_us") == Some(31.5)`.
pub fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}
