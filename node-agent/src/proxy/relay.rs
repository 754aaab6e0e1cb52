//! Copying between a tunnel stream and a TCP connection, both directions at once.
//!
//! - Half-close: a FIN from the TCP side becomes END_STREAM and END_STREAM becomes
//!   `shutdown(Write)`; the other direction keeps flowing until it ends too.
//! - Backpressure: received flow-control capacity is released only once the bytes are written to
//!   the TCP side, so a slow app slows its sender instead of filling memory.
//! - Memory: reads go into buffers of 16–256 KiB that grow while reads fill them and are freed
//!   when the socket has been quiet for a second, so an idle connection holds no data buffer.
//! - No copies: read buffers are frozen into `Bytes` handed to h2 as they are, and received DATA
//!   frames are written to the socket as they are, several per `writev`.

mod buffers;

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::WriteHalf;

use buffers::ReadBuffers;

use super::stream::{HboneStream, h2_to_io, poll_chunk, poll_send_closed};

/// How long read buffers outlive the last read.
const KEEP_BUFFERS: Duration = Duration::from_secs(1);
/// DATA frames gathered into one `writev`.
const GATHER: usize = 16;

/// What one relayed connection carried, for the access log; `result` says how it ended.
#[derive(Debug)]
pub struct Relayed {
    pub tcp_to_tunnel: u64,
    pub tunnel_to_tcp: u64,
    pub result: io::Result<()>,
}

/// Relays until both directions have ended. On an error in either direction both sides are
/// aborted (RST_STREAM, TCP RST), so neither peer mistakes an abort for a clean end.
pub async fn relay(stream: HboneStream, tcp: TcpStream) -> Relayed {
    relay_until(stream, tcp, std::future::pending::<String>())
        .await
        .0
}

/// [`relay`], cut short (both sides aborted) when `until` completes with a reason: what was
/// allowed when the connection opened no longer is. Returns the reason if it was cut.
pub async fn relay_until<W: std::fmt::Display>(
    stream: HboneStream,
    mut tcp: TcpStream,
    until: impl Future<Output = W>,
) -> (Relayed, Option<W>) {
    let HboneStream {
        mut send,
        mut recv,
        slot: _slot,
        ..
    } = stream;
    let (mut up, mut down) = (0, 0);
    let (reader, mut writer) = tcp.split();
    let copying = async {
        tokio::try_join!(
            tcp_to_tunnel(reader.as_ref(), &mut send, &mut up),
            tunnel_to_tcp(&mut recv, &mut writer, &mut down),
        )
        .map(|_| ())
    };
    let (result, cut) = tokio::select! {
        copied = copying => (copied, None),
        reason = until => {
            let error = io::Error::new(io::ErrorKind::ConnectionAborted, reason.to_string());
            (Err(error), Some(reason))
        }
    };
    if result.is_err() {
        send.send_reset(Reason::CANCEL);
        let _ = tcp.set_zero_linger();
    }
    let relayed = Relayed {
        tcp_to_tunnel: up,
        tunnel_to_tcp: down,
        result,
    };
    (relayed, cut)
}

async fn tcp_to_tunnel(
    tcp: &TcpStream,
    send: &mut SendStream<Bytes>,
    total: &mut u64,
) -> io::Result<()> {
    let mut buffers = ReadBuffers::new();
    loop {
        let buf = buffers.next();
        match tcp.try_read_buf(buf) {
            Ok(0) => return send.send_data(Bytes::new(), true).map_err(h2_to_io),
            Ok(n) => {
                let data = buf.split().freeze();
                buffers.filled(n);
                *total += n as u64;
                send_all(send, data).await?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Keep the buffers through short pauses; a quiet connection gives them back.
                match tokio::time::timeout(KEEP_BUFFERS, tcp.readable()).await {
                    Ok(ready) => ready?,
                    Err(_quiet) => {
                        buffers.release();
                        tcp.readable().await?;
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Hands `data` to h2 as flow control allows; waits while the peer's window is closed.
async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> io::Result<()> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) => {
                let part = data.split_to(n.min(data.len()));
                if !part.is_empty() {
                    send.send_data(part, false).map_err(h2_to_io)?;
                }
            }
            Some(Err(e)) => return Err(h2_to_io(e)),
            None => return Err(poll_fn(|cx| poll_send_closed(send, cx)).await),
        }
    }
    Ok(())
}

async fn tunnel_to_tcp(
    recv: &mut RecvStream,
    tcp: &mut WriteHalf<'_>,
    total: &mut u64,
) -> io::Result<()> {
    let mut chunks = Vec::new();
    loop {
        let Some(first) = poll_fn(|cx| poll_chunk(recv, cx)).await? else {
            return match tcp.shutdown().await {
                // The app already closed its socket entirely: nothing left to tell it.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                other => other,
            };
        };
        chunks.push(first);
        // Take what else has already arrived; an end or error is seen again on the next turn.
        while chunks.len() < GATHER {
            match poll_fn(|cx| Poll::Ready(poll_chunk(recv, cx))).await {
                Poll::Ready(Ok(Some(data))) => chunks.push(data),
                _ => break,
            }
        }
        let len: usize = chunks.iter().map(Bytes::len).sum();
        write_all(tcp, &mut chunks).await?;
        *total += len as u64;
        recv.flow_control()
            .release_capacity(len)
            .map_err(h2_to_io)?;
    }
}

/// Writes every chunk (emptying `chunks`) with as few `writev` calls as the socket allows.
async fn write_all(tcp: &mut WriteHalf<'_>, chunks: &mut Vec<Bytes>) -> io::Result<()> {
    let mut first = 0;
    while first < chunks.len() {
        let mut slices = [IoSlice::new(&[]); GATHER];
        let pending = &chunks[first..chunks.len().min(first + GATHER)];
        for (slice, chunk) in slices.iter_mut().zip(pending) {
            *slice = IoSlice::new(chunk);
        }
        let mut written = tcp.write_vectored(&slices[..pending.len()]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let chunk = &mut chunks[first];
            let step = written.min(chunk.len());
            chunk.advance(step);
            written -= step;
            if chunk.is_empty() {
                first += 1;
            }
        }
    }
    chunks.clear();
    Ok(())
}
