//! One tunnelled TCP connection: an HTTP/2 `CONNECT` stream after its 200 response.
//!
//! [`super::relay`] moves its `Bytes` without copying; the `AsyncRead`/`AsyncWrite` impls are for
//! callers that need a byte stream (they copy once, as any such adapter must).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest slice one `poll_write` hands to h2, so a huge write cannot hog the connection.
const MAX_WRITE: usize = 256 << 10;

/// Counts a stream against its tunnel's concurrency limit until dropped.
#[derive(Debug)]
pub(super) struct StreamSlot(pub(super) Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
pub struct HboneStream {
    pub(super) send: SendStream<Bytes>,
    pub(super) recv: RecvStream,
    /// The unread rest of the last DATA frame (byte-stream reads only).
    unread: Bytes,
    ended: bool,
    pub(super) slot: Option<StreamSlot>,
}

impl HboneStream {
    pub(super) fn new(send: SendStream<Bytes>, recv: RecvStream, slot: Option<StreamSlot>) -> Self {
        Self {
            send,
            recv,
            unread: Bytes::new(),
            ended: false,
            slot,
        }
    }
}

/// The next non-empty DATA frame, `None` at END_STREAM. The caller releases flow-control
/// capacity once it has passed the bytes on, which is what paces the sender.
pub(super) fn poll_chunk(
    recv: &mut RecvStream,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<Bytes>>> {
    loop {
        return Poll::Ready(match ready!(recv.poll_data(cx)) {
            None => Ok(None),
            Some(Ok(data)) if data.is_empty() => continue,
            Some(Ok(data)) => Ok(Some(data)),
            // RFC 9113 §8.1: NO_ERROR after a complete response only says "stop sending".
            Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => Ok(None),
            Some(Err(e)) => Err(h2_to_io(e)),
        });
    }
}

/// Maps a stream failure to the `io::Error` a socket would give: a reset is a reset.
pub(super) fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().expect("checked is_io");
    }
    let kind = match e.reason() {
        Some(Reason::NO_ERROR | Reason::CANCEL) => io::ErrorKind::ConnectionReset,
        Some(Reason::REFUSED_STREAM) => io::ErrorKind::ConnectionRefused,
        _ => io::ErrorKind::ConnectionAborted,
    };
    io::Error::new(kind, e)
}

/// Why h2 stopped granting capacity: the reset reason if the peer sent one.
pub(super) fn poll_send_closed(
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<io::Error> {
    Poll::Ready(match ready!(send.poll_reset(cx)) {
        Ok(reason) => h2_to_io(reason.into()),
        Err(e) => h2_to_io(e),
    })
}

impl AsyncRead for HboneStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unread.is_empty() {
            match ready!(poll_chunk(&mut this.recv, cx))? {
                Some(data) => this.unread = data,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.unread.len());
        buf.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HboneStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let send = &mut self.send;
        send.reserve_capacity(buf.len().min(MAX_WRITE));
        loop {
            return match ready!(send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    send.send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(h2_to_io)?;
                    Poll::Ready(Ok(n))
                }
                Some(Err(e)) => Poll::Ready(Err(h2_to_io(e))),
                None => poll_send_closed(send, cx).map(Err),
            };
        }
    }

    /// h2's connection task flushes; there is nothing buffered here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Half-close: END_STREAM, after which the other direction keeps flowing.
    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ended {
            self.ended = true;
            self.send.send_data(Bytes::new(), true).map_err(h2_to_io)?;
        }
        Poll::Ready(Ok(()))
    }
}
