//! Watches the HTTP/2 frames a server writes for the ones that say a client hit a limit: GOAWAY
//! with ENHANCE_YOUR_CALM (Rapid Reset, MadeYouReset, other floods h2 stops) and RST_STREAM with
//! REFUSED_STREAM (a stream over `max_concurrent_streams`). hyper and tonic close such
//! connections without telling the application, so this is where they are counted.
//!
//! Only frame headers and the first bytes of those two frame types are looked at: O(1) per frame.
//! A connection whose first written byte is not 0 speaks HTTP/1.1 and is not watched (an HTTP/2
//! server starts with a SETTINGS frame, whose 24-bit length is far below 2^16).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Listener;
use crate::metrics::Metrics;

const HEADER_LEN: usize = 9;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
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
}

impl Http2Limit {
    /// The config field, for the `limit` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingAcceptResets => "http2.max_pending_accept_reset_streams",
            Self::LocalErrorResets => "http2.max_local_error_reset_streams",
            Self::EnhanceYourCalm => "http2.enhance_your_calm",
            Self::ConcurrentStreams => "http2.max_concurrent_streams",
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
}

impl Default for FrameWatch {
    fn default() -> Self {
        Self {
            state: State::Start,
            header: [0; HEADER_LEN],
            captured: [0; CAPTURE],
            filled: 0,
            frame_type: 0,
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

    fn start_payload(&mut self, hit: &mut impl FnMut(Http2Limit)) {
        let [a, b, c, frame_type, ..] = self.header;
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
}

impl Reporter {
    fn hit(&self, limit: Http2Limit) {
        self.metrics.limit_hit(self.listener, limit.as_str());
        let (listener, remote) = (self.listener.as_str(), self.remote);
        if limit.closes_connection() {
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
}

impl<S> Watched<S> {
    pub fn new(inner: S, reporter: Reporter) -> Self {
        Self {
            inner,
            watch: FrameWatch::default(),
            reporter,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn saw(&mut self, written: &[u8]) {
        let reporter = &self.reporter;
        self.watch
            .written(written, &mut |limit| reporter.hit(limit));
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
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
    fn http1_responses_are_not_read_as_frames() {
        let mut stream = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        stream.extend(goaway(ENHANCE_YOUR_CALM, b"too_many_resets"));
        assert!(hits(&stream, 5).is_empty());
    }
}
