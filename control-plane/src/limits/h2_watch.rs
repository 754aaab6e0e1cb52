//! Watches the HTTP/2 frames a server writes for the ones that say a client hit a limit: GOAWAY
//! with ENHANCE_YOUR_CALM (Rapid Reset, MadeYouReset, other floods h2 stops) and RST_STREAM with
//! REFUSED_STREAM (a stream over `max_concurrent_streams`). hyper and tonic close such
//! connections without telling the application, so this is where they are counted.
//!
//! Keepalive timeouts leave no frame: hyper drops a connection whose peer sent nothing for
//! `keepalive_timeout` after its PING. So a connection that ends with a PING written, nothing
//! read since, and (nearly) that long gone by, is counted as one.
//!
//! Only frame headers and the first bytes of those two frame types are looked at: O(1) per frame.
//! A connection whose first written byte is not 0 speaks HTTP/1.1 and is not watched (an HTTP/2
//! server starts with a SETTINGS frame, whose 24-bit length is far below 2^16).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Listener;
use crate::metrics::Metrics;

const HEADER_LEN: usize = 9;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// Last-stream-id and error code, then as much debug data as tells h2's reasons apart.
const CAPTURE: usize = 8 + 32;

/// A limit an HTTP/2 client hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2Limit {
    /// Resets of streams not yet accepted (`too_many_resets`).
    PendingAcceptResets,
    /// Streams the server reset because of the client's errors (`too_many_internal_resets`).
    LocalErrorResets,
    /// Another flood h2 stops by itself (CONTINUATION, tiny DATA frames, ...).
    EnhanceYourCalm,
    ConcurrentStreams,
    /// The peer did not answer a keepalive PING in time.
    KeepaliveTimeout,
}

impl Http2Limit {
    /// The config field, for the `limit` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingAcceptResets => "http2.max_pending_accept_reset_streams",
            Self::LocalErrorResets => "http2.max_local_error_reset_streams",
            Self::EnhanceYourCalm => "http2.enhance_your_calm",
            Self::ConcurrentStreams => "http2.max_concurrent_streams",
            Self::KeepaliveTimeout => "http2.keepalive_timeout",
        }
    }

    /// Whether the connection is being closed (GOAWAY) rather than one stream refused.
    pub fn closes_connection(self) -> bool {
        self != Self::ConcurrentStreams
    }
}

#[derive(Debug)]
enum State {
    Start,
    NotHttp2,
    Header { filled: usize },
    Payload { remaining: usize, want: usize },
}

/// Follows frame boundaries through the bytes written.
#[derive(Debug)]
pub struct FrameWatch {
    state: State,
    header: [u8; HEADER_LEN],
    captured: [u8; CAPTURE],
    filled: usize,
    frame_type: u8,
    /// A PING (not an ACK) started since [`FrameWatch::take_ping`] last asked.
    ping_written: bool,
}

impl Default for FrameWatch {
    fn default() -> Self {
        Self {
            state: State::Start,
            header: [0; HEADER_LEN],
            captured: [0; CAPTURE],
            filled: 0,
            frame_type: 0,
            ping_written: false,
        }
    }
}

impl FrameWatch {
    /// Feeds bytes as written, in order; `hit` is called for each limit frame seen.
    pub fn written(&mut self, mut bytes: &[u8], hit: &mut impl FnMut(Http2Limit)) {
        while !bytes.is_empty() {
            match self.state {
                State::NotHttp2 => return,
                State::Start if bytes[0] != 0 => self.state = State::NotHttp2,
                State::Start => self.state = State::Header { filled: 0 },
                State::Header { filled } => {
                    let n = (HEADER_LEN - filled).min(bytes.len());
                    self.header[filled..filled + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    self.state = State::Header { filled: filled + n };
                    if filled + n == HEADER_LEN {
                        self.start_payload(hit);
                    }
                }
                State::Payload { remaining, want } => {
                    let n = remaining.min(bytes.len());
                    let keep = want.saturating_sub(self.filled).min(n);
                    self.captured[self.filled..self.filled + keep].copy_from_slice(&bytes[..keep]);
                    self.filled += keep;
                    bytes = &bytes[n..];
                    self.state = State::Payload {
                        remaining: remaining - n,
                        want,
                    };
                    if remaining == n {
                        self.end_frame(hit);
                    }
                }
            }
        }
    }

    /// Whether a PING of the server's own (not an answer to the peer's) was written since the
    /// last call.
    pub fn take_ping(&mut self) -> bool {
        std::mem::take(&mut self.ping_written)
    }

    fn start_payload(&mut self, hit: &mut impl FnMut(Http2Limit)) {
        let [a, b, c, frame_type, flags, ..] = self.header;
        self.ping_written |= frame_type == PING && flags & ACK == 0;
        let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
        let want = match frame_type {
            GOAWAY => len.min(CAPTURE),
            RST_STREAM => len.min(4),
            _ => 0,
        };
        self.frame_type = frame_type;
        self.filled = 0;
        self.state = State::Payload {
            remaining: len,
            want,
        };
        if len == 0 {
            self.end_frame(hit);
        }
    }

    fn end_frame(&mut self, hit: &mut impl FnMut(Http2Limit)) {
        let code = |at: usize| {
            self.captured
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let limit = match self.frame_type {
            GOAWAY if self.filled >= 8 && code(4) == Some(ENHANCE_YOUR_CALM) => {
                Some(match &self.captured[8..self.filled] {
                    b"too_many_resets" => Http2Limit::PendingAcceptResets,
                    b"too_many_internal_resets" => Http2Limit::LocalErrorResets,
                    _ => Http2Limit::EnhanceYourCalm,
                })
            }
            RST_STREAM if self.filled == 4 && code(0) == Some(REFUSED_STREAM) => {
                Some(Http2Limit::ConcurrentStreams)
            }
            _ => None,
        };
        if let Some(limit) = limit {
            hit(limit);
        }
        self.state = State::Header { filled: 0 };
    }
}

/// Counts and logs the limits one connection hit.
#[derive(Debug, Clone)]
pub struct Reporter {
    pub metrics: Arc<Metrics>,
    pub listener: Listener,
    pub remote: SocketAddr,
    /// The server's `http2.keepalive_timeout`.
    pub keepalive_timeout: Duration,
}

impl Reporter {
    fn hit(&self, limit: Http2Limit) {
        self.metrics.limit_hit(self.listener, limit.as_str());
        let (listener, remote) = (self.listener.as_str(), self.remote);
        if limit == Http2Limit::KeepaliveTimeout {
            tracing::info!(listener, %remote, limit = limit.as_str(), "HTTP/2 peer did not answer a keepalive ping: connection closed");
        } else if limit.closes_connection() {
            tracing::warn!(listener, %remote, limit = limit.as_str(), "HTTP/2 client over a limit: connection closed (GOAWAY)");
        } else {
            tracing::debug!(listener, %remote, limit = limit.as_str(), "HTTP/2 stream refused");
        }
    }
}

/// A server-side stream whose writes go through a [`FrameWatch`].
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    watch: FrameWatch,
    reporter: Reporter,
    /// When the server's latest PING was written, unless the peer sent anything since.
    unanswered_ping: Option<Instant>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, reporter: Reporter) -> Self {
        Self {
            inner,
            watch: FrameWatch::default(),
            reporter,
            unanswered_ping: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn saw(&mut self, written: &[u8]) {
        let reporter = &self.reporter;
        self.watch
            .written(written, &mut |limit| reporter.hit(limit));
        if self.watch.take_ping() && self.unanswered_ping.is_none() {
            self.unanswered_ping = Some(Instant::now());
        }
    }
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        if let Some(sent) = self.unanswered_ping
            && keepalive_expired(sent.elapsed(), self.reporter.keepalive_timeout)
        {
            self.reporter.hit(Http2Limit::KeepaliveTimeout);
        }
    }
}

/// hyper starts its timer just before the PING reaches the socket, so allow a tenth less.
fn keepalive_expired(silent_for: Duration, keepalive_timeout: Duration) -> bool {
    silent_for >= keepalive_timeout - keepalive_timeout / 10
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if read.is_ready() {
            // Bytes, end of stream or an error: the peer is not silent.
            self.unanswered_ping = None;
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.saw(&buf[..n]);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = written {
            for buf in bufs {
                let take = n.min(buf.len());
                self.saw(&buf[..take]);
                n -= take;
                if n == 0 {
                    break;
                }
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(frame_type: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut frame = len.to_be_bytes()[1..].to_vec();
        frame.extend([frame_type, 0]);
        frame.extend(stream.to_be_bytes());
        frame.extend(payload);
        frame
    }

    fn goaway(code: u32, debug: &[u8]) -> Vec<u8> {
        let mut payload = 5u32.to_be_bytes().to_vec();
        payload.extend(code.to_be_bytes());
        payload.extend(debug);
        frame(GOAWAY, 0, &payload)
    }

    fn hits(stream: &[u8], chunk: usize) -> Vec<Http2Limit> {
        let mut watch = FrameWatch::default();
        let mut seen = Vec::new();
        for part in stream.chunks(chunk) {
            watch.written(part, &mut |limit| seen.push(limit));
        }
        seen
    }

    #[test]
    fn limit_frames_are_found_however_the_writes_are_cut() {
        let mut stream = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]);
        stream.extend(frame(0x1, 1, &[0x88; 300]));
        stream.extend(frame(RST_STREAM, 3, &REFUSED_STREAM.to_be_bytes()));
        stream.extend(frame(RST_STREAM, 5, &0x8u32.to_be_bytes()));
        stream.extend(frame(0x6, 0, &[0; 8]));
        stream.extend(goaway(ENHANCE_YOUR_CALM, b"too_many_internal_resets"));
        stream.extend(goaway(ENHANCE_YOUR_CALM, b"too_many_resets"));
        stream.extend(goaway(ENHANCE_YOUR_CALM, b""));
        stream.extend(goaway(0, b""));
        let expected = [
            Http2Limit::ConcurrentStreams,
            Http2Limit::LocalErrorResets,
            Http2Limit::PendingAcceptResets,
            Http2Limit::EnhanceYourCalm,
        ];
        for chunk in [1, 2, 7, 9, 10, 64, stream.len()] {
            assert_eq!(
                hits(&stream, chunk),
                expected,
                "written {chunk} bytes at a time"
            );
        }
    }

    #[test]
    fn only_the_servers_own_pings_are_noticed() {
        let mut watch = FrameWatch::default();
        let mut ack = frame(PING, 0, &[0; 8]);
        ack[4] = ACK;
        watch.written(&ack, &mut |_| {});
        assert!(!watch.take_ping(), "an answer to the peer's ping");
        let ping = frame(PING, 0, &[1; 8]);
        for byte in ping.chunks(1) {
            watch.written(byte, &mut |_| {});
        }
        assert!(watch.take_ping());
        assert!(!watch.take_ping(), "taken once");
    }

    #[test]
    fn a_ping_unanswered_for_about_the_timeout_is_a_keepalive_timeout() {
        let timeout = Duration::from_secs(20);
        assert!(keepalive_expired(Duration::from_secs(20), timeout));
        assert!(keepalive_expired(Duration::from_millis(18_500), timeout));
        assert!(!keepalive_expired(Duration::from_secs(5), timeout));
    }

    #[test]
    fn http1_responses_are_not_read_as_frames() {
        let mut stream = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        stream.extend(goaway(ENHANCE_YOUR_CALM, b"too_many_resets"));
        assert!(hits(&stream, 5).is_empty());
    }
}
