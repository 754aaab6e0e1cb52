//! The echo server and the request/response latency client that uses it.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Error, io};
use crate::bench::quantile;

/// Exchanges before `rr` starts its clock: the first ones pay for setup along the path
/// (page faults, buffers, a lazily opened upstream), which is not steady-state latency.
const WARMUP: usize = 100;

/// Echoes whatever arrives until the peer closes. With `close_after`, the server closes once it
/// has echoed that many bytes, so TIME_WAIT stays on the server side (as with HTTP/1.0) and a
/// client opening thousands of connections a second does not run out of ephemeral ports.
pub async fn echo(listener: TcpListener, close_after: Option<u64>) -> Result<(), Error> {
    loop {
        let (stream, _) = listener.accept().await.map_err(io("accepting"))?;
        // A failed connection is the client's to report: it checks every echo it gets.
        tokio::spawn(async move { serve(stream, close_after.unwrap_or(u64::MAX)).await });
    }
}

async fn serve(mut stream: TcpStream, close_after: u64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    // Small: `hold` parks a thousand of these, and rr messages are 1 KiB.
    let mut buf = vec![0; 16 * 1024];
    let mut echoed = 0u64;
    while echoed < close_after {
        let want = buf.len().min((close_after - echoed) as usize);
        let n = stream.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
        echoed += n as u64;
    }
    stream.shutdown().await
}

/// A TCP connection with Nagle off, as latency-sensitive apps open them.
pub(super) async fn connect(addr: SocketAddr) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(io("connecting to the echo server"))?;
    stream
        .set_nodelay(true)
        .map_err(io("setting TCP_NODELAY"))?;
    Ok(stream)
}

/// Sends `request`, waits for the same bytes back.
pub(super) async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    reply: &mut [u8],
) -> Result<(), Error> {
    stream
        .write_all(request)
        .await
        .map_err(io("sending a request"))?;
    stream
        .read_exact(reply)
        .await
        .map_err(io("reading the echo"))?;
    if reply != request {
        return Err(Error::EchoMismatch);
    }
    Ok(())
}

/// Round trips of one request size on one connection, sorted.
#[derive(Debug, Clone)]
pub struct RrReport {
    pub size: usize,
    pub samples: Vec<Duration>,
}

impl RrReport {
    pub fn quantile_us(&self, q: f64) -> f64 {
        quantile(&self.samples, q).as_secs_f64() * 1e6
    }
}

impl fmt::Display for RrReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rr size={} exchanges={} p50_us={:.1} p99_us={:.1}",
            self.size,
            self.samples.len(),
            self.quantile_us(0.5),
            self.quantile_us(0.99)
        )
    }
}

/// Ping-pong of `size`-byte messages on one connection for `duration`, one in flight.
pub async fn rr(addr: SocketAddr, size: usize, duration: Duration) -> Result<RrReport, Error> {
    let mut stream = connect(addr).await?;
    let request: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut reply = vec![0; size];
    for _ in 0..WARMUP {
        exchange(&mut stream, &request, &mut reply).await?;
    }
    let deadline = Instant::now() + duration;
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        let sent = Instant::now();
        exchange(&mut stream, &request, &mut reply).await?;
        samples.push(sent.elapsed());
    }
    samples.sort();
    Ok(RrReport { size, samples })
}
