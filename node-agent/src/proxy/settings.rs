//! HTTP/2 settings of both tunnel ends and the keepalive that detects dead peers.
//!
//! Windows are large because one TLS connection carries bulk transfers between nodes: with the
//! 64 KiB HTTP/2 default a stream stalls every 64 KiB for a round trip. The values follow
//! ztunnel's defaults, so either end can be a ztunnel.

use std::time::Duration;

use h2::{Ping, PingPong};

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
/// Streams a peer may open on one inbound connection; above any pool's per-connection limit
/// (ztunnel uses 100, our [`super::PoolConfig`] 256) so clients are not made to queue.
const SERVER_MAX_STREAMS: u32 = 512;

/// A quiet tunnel is pinged this often, which also keeps NAT and conntrack state alive.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// A peer that has not answered a ping in this long is gone.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

pub(super) fn server() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(SERVER_MAX_STREAMS);
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

/// Pings the peer forever; returns why the connection should be considered dead. Must be
/// polled alongside the connection, which is what actually sends the pings.
pub(super) async fn keepalive(mut ping_pong: PingPong) -> String {
    loop {
        tokio::time::sleep(PING_INTERVAL).await;
        match tokio::time::timeout(PING_TIMEOUT, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return format!("ping failed: {e}"),
            Err(_) => return format!("no ping answer within {PING_TIMEOUT:?}"),
        }
    }
}
