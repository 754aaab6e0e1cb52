//! HTTP/2 settings of both tunnel ends and the keepalive that detects dead peers.
//!
//! Windows are large because one TLS connection carries bulk transfers between nodes: with the
//! 64 KiB HTTP/2 default a stream stalls every 64 KiB for a round trip. The values follow
//! ztunnel's defaults, so either end can be a ztunnel.

use std::time::Duration;

use h2::{Ping, PingPong};

use crate::config::Http2Limits;

/// Per-stream receive window: how far a sender may run ahead of the app reading the data.
const STREAM_WINDOW: u32 = 4 << 20;
/// Per-connection receive window, shared by all streams of a tunnel.
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest DATA frame we accept: big frames mean fewer headers and wake-ups per byte.
const MAX_FRAME: u32 = 1 << 20;
/// Data a stream may have queued in h2 before its writer waits: bounds memory per stream.
const MAX_SEND_BUFFER: usize = 1 << 20;
/// Encrypted bytes rustls may queue before a write must wait for the socket. Above the 64 KiB
/// default so that one `writev` carries 16 records of a large DATA frame instead of 4.
pub(super) const TLS_SEND_BUFFER: usize = 256 << 10;
/// CONNECT requests and responses carry a handful of small headers.
const MAX_HEADER_LIST: u32 = 16 << 10;

/// A quiet tunnel is pinged this often, which also keeps NAT and conntrack state alive.
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(10);
/// A peer that has not answered a ping in this long is gone.
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The HBONE server, with the configured limits; the reset limits are h2's defences against
/// HTTP/2 rapid reset (pending-accept resets) and MadeYouReset (resets the peer's protocol
/// errors make us send): beyond them h2 sends GOAWAY `ENHANCE_YOUR_CALM`.
pub(super) fn server(limits: &Http2Limits) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(limits.max_header_list_size)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.max_pending_reset_streams)
        .max_local_error_reset_streams(Some(limits.max_local_reset_streams));
    builder
}

pub(super) fn client(max_streams: usize) -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        // Until the server's SETTINGS arrive, assume it allows what we will use.
        .initial_max_send_streams(max_streams)
        .enable_push(false);
    builder
}

/// Why [`keepalive`] gave up on a peer.
#[derive(Debug, thiserror::Error)]
pub(super) enum KeepaliveFailure {
    #[error("ping failed: {0}")]
    Ping(h2::Error),
    #[error("no ping answer within {0:?}")]
    Timeout(Duration),
}

/// Pings the peer every `interval` forever; returns why the connection should be considered
/// dead. Must be polled alongside the connection, which is what actually sends the pings.
pub(super) async fn keepalive(
    mut ping_pong: PingPong,
    interval: Duration,
    timeout: Duration,
) -> KeepaliveFailure {
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return KeepaliveFailure::Ping(e),
            Err(_) => return KeepaliveFailure::Timeout(timeout),
        }
    }
}
