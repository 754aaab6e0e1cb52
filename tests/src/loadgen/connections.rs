//! Connection-heavy modes against the echo server: how fast new connections can be made, and
//! many idle connections held open (for the memory they cost along the path).

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use super::echo::{connect, exchange};
use super::{Error, io};

/// The one request each `connect_rate` connection makes; its echo server must run with
/// `close_after` equal to this, so the server closes first.
pub const CONNECT_REQUEST: &[u8; 32] = b"ferrule-loadgen connect-rate 32\n";

/// New connections completed (connect, one exchange, close) over the run.
#[derive(Debug, Clone)]
pub struct ConnectReport {
    pub concurrency: usize,
    pub connections: u64,
    pub elapsed: Duration,
}

impl ConnectReport {
    pub fn per_second(&self) -> f64 {
        self.connections as f64 / self.elapsed.as_secs_f64()
    }
}

impl fmt::Display for ConnectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connect-rate concurrency={} connections={} seconds={:.3} per_second={:.0}",
            self.concurrency,
            self.connections,
            self.elapsed.as_secs_f64(),
            self.per_second()
        )
    }
}

/// `concurrency` loops, each making connections one after another until `duration` is up.
pub async fn connect_rate(
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
) -> Result<ConnectReport, Error> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = JoinSet::new();
    for _ in 0..concurrency {
        loops.spawn(async move {
            let mut made = 0u64;
            while Instant::now() < deadline {
                one_connection(addr).await?;
                made += 1;
            }
            Ok::<_, Error>(made)
        });
    }
    let mut connections = 0;
    while let Some(made) = loops.join_next().await {
        connections += made.expect("a connect loop panicked")?;
    }
    Ok(ConnectReport {
        concurrency,
        connections,
        elapsed: start.elapsed(),
    })
}

async fn one_connection(addr: SocketAddr) -> Result<(), Error> {
    let mut stream = connect(addr).await?;
    let mut reply = [0; CONNECT_REQUEST.len()];
    exchange(&mut stream, CONNECT_REQUEST, &mut reply).await?;
    // Wait for the server's FIN before dropping ours: the side that closes first keeps the
    // TIME_WAIT, and it must not be this one.
    let mut rest = [0; 1];
    let extra = stream.read(&mut rest).await;
    match extra.map_err(io("waiting for the server to close"))? {
        0 => Ok(()),
        _ => Err(Error::EchoMismatch),
    }
}

const HOLD_REQUEST: &[u8] = b"ferrule-loadgen hold\n";

/// Idle connections that were open together, and how many still echoed after the hold.
#[derive(Debug, Clone)]
pub struct HoldReport {
    pub connections: usize,
    pub echoed: usize,
}

impl fmt::Display for HoldReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hold connections={} echoed={}",
            self.connections, self.echoed
        )
    }
}

/// Opens `connections` connections, with one exchange each so every one is established end to
/// end (not only accepted by a local proxy), calls `opened` with the count, leaves them idle for
/// `duration`, then exchanges once more on each to prove they survived.
pub async fn hold(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    opened: impl FnOnce(usize),
) -> Result<HoldReport, Error> {
    let mut reply = vec![0; HOLD_REQUEST.len()];
    let mut open = Vec::with_capacity(connections);
    // One at a time: opening a thousand at once would measure SYN backlogs and retransmit
    // timers, not memory.
    for _ in 0..connections {
        let mut stream = connect(addr).await?;
        exchange(&mut stream, HOLD_REQUEST, &mut reply).await?;
        open.push(stream);
    }
    opened(open.len());
    tokio::time::sleep(duration).await;
    let mut echoed = 0;
    for stream in &mut open {
        exchange(stream, HOLD_REQUEST, &mut reply).await?;
        echoed += 1;
    }
    Ok(HoldReport {
        connections: open.len(),
        echoed,
    })
}
