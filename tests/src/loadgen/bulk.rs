//! Bulk transfer. `source` writes a known pattern on N connections until a deadline, then
//! half-closes; `sink` checks every byte against the pattern and answers the half-close with
//! the count it verified. The source stops its clock at that answer, so throughput counts bytes
//! that arrived intact at the app, not bytes the kernel (or a proxy) merely accepted.

use std::fmt;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{Error, io};

/// Application read and write size: large, so the benchmark measures the data path rather
/// than the load generator's syscall rate.
pub const BULK_BUFFER: usize = 256 * 1024;

/// The pattern repeats with a prime period, so a dropped, repeated or reordered chunk of any
/// ordinary size (TLS record, page, buffer) lands out of phase and is caught.
const PERIOD: usize = 65_521;

/// One period of xorshift bytes, extended so that any `BULK_BUFFER` window starting within the
/// first period is one contiguous slice: writing and checking are then a send and a memcmp.
static PATTERN: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let period: Vec<u8> = (0..PERIOD)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    period
        .iter()
        .cycle()
        .take(PERIOD + BULK_BUFFER)
        .copied()
        .collect()
});

/// The pattern bytes at stream offset `offset`; `len` is at most `BULK_BUFFER`.
pub(super) fn pattern_at(offset: u64, len: usize) -> &'static [u8] {
    let start = (offset % PERIOD as u64) as usize;
    &PATTERN[start..start + len]
}

/// Accepts bulk connections until the listener fails; `report` gets each connection's verified
/// byte count, or why the connection was refused its confirmation.
pub async fn sink<R>(listener: TcpListener, report: R) -> Result<(), Error>
where
    R: Fn(Result<u64, Error>) + Clone + Send + 'static,
{
    loop {
        let (stream, _) = listener.accept().await.map_err(io("accepting"))?;
        let report = report.clone();
        tokio::spawn(async move {
            let verified = drain(stream).await;
            report(verified);
        });
    }
}

/// Reads and verifies until EOF, then confirms the count. On corruption it returns without
/// confirming, which the source sees as a failed run.
async fn drain(mut stream: TcpStream) -> Result<u64, Error> {
    let mut buf = vec![0; BULK_BUFFER];
    let mut offset = 0u64;
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(io("reading bulk data"))?;
        if n == 0 {
            break;
        }
        let expected = pattern_at(offset, n);
        if buf[..n] != *expected {
            let at = buf.iter().zip(expected).position(|(a, b)| a != b);
            return Err(Error::Corrupted {
                offset: offset + at.unwrap_or(0) as u64,
            });
        }
        offset += n as u64;
    }
    stream
        .write_all(&offset.to_le_bytes())
        .await
        .map_err(io("confirming the byte count"))?;
    stream.shutdown().await.map_err(io("closing"))?;
    Ok(offset)
}

/// What `source` moved: bytes confirmed by the sink over the wall time of all streams.
#[derive(Debug, Clone)]
pub struct BulkReport {
    pub streams: usize,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl BulkReport {
    pub fn gbit_per_second(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e9
    }
}

impl fmt::Display for BulkReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "source streams={} bytes={} seconds={:.3} gbps={:.3}",
            self.streams,
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.gbit_per_second()
        )
    }
}

/// Sends on `streams` parallel connections for `duration`; fails unless every byte sent was
/// confirmed by the sink.
pub async fn source(
    addr: SocketAddr,
    streams: usize,
    duration: Duration,
) -> Result<BulkReport, Error> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut senders = JoinSet::new();
    for _ in 0..streams {
        senders.spawn(send(addr, deadline));
    }
    let mut bytes = 0;
    while let Some(sent) = senders.join_next().await {
        bytes += sent.expect("a bulk sender panicked")?;
    }
    Ok(BulkReport {
        streams,
        bytes,
        elapsed: start.elapsed(),
    })
}

async fn send(addr: SocketAddr, deadline: Instant) -> Result<u64, Error> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(io("connecting to the sink"))?;
    let mut offset = 0u64;
    while Instant::now() < deadline {
        // `write`, not `write_all`: a partial write simply moves the offset, and the next
        // window starts where the kernel stopped taking bytes.
        offset += stream
            .write(pattern_at(offset, BULK_BUFFER))
            .await
            .map_err(io("writing bulk data"))? as u64;
    }
    stream
        .shutdown()
        .await
        .map_err(io("half-closing the bulk stream"))?;
    let mut confirmation = [0; 8];
    stream.read_exact(&mut confirmation).await.map_err(io(
        "reading the sink's confirmation (see the sink's output)",
    ))?;
    let confirmed = u64::from_le_bytes(confirmation);
    if confirmed != offset {
        return Err(Error::Lost {
            sent: offset,
            confirmed,
        });
    }
    Ok(offset)
}
