//! The load generator against itself on loopback: what it reports must be what happened, or the
//! datapath benchmark's figures mean nothing.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::bulk::pattern_at;
use super::*;

const RUN: Duration = Duration::from_millis(300);

async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

/// A sink whose per-connection reports arrive on the returned channel.
async fn start_sink() -> (SocketAddr, mpsc::UnboundedReceiver<Result<u64, Error>>) {
    let (listener, addr) = loopback().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(sink(listener, move |result| {
        let _ = tx.send(result);
    }));
    (addr, rx)
}

async fn start_echo(close_after: Option<u64>) -> SocketAddr {
    let (listener, addr) = loopback().await;
    tokio::spawn(echo(listener, close_after));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_bytes_are_what_the_sink_verified() {
    let (addr, mut reports) = start_sink().await;
    let report = source(addr, 3, RUN).await.expect("bulk run");
    let mut verified = 0;
    for _ in 0..3 {
        verified += reports
            .recv()
            .await
            .expect("a sink report")
            .expect("intact");
    }
    assert_eq!(verified, report.bytes, "sink verified vs source sent");
    assert!(
        report.bytes > BULK_BUFFER as u64,
        "a loopback run moves more than one buffer: {report}"
    );
    assert!(report.elapsed >= RUN, "{report}");
    assert_eq!(
        field(&report.to_string(), "bytes"),
        Some(report.bytes as f64)
    );
    assert!(field(&report.to_string(), "gbps").expect("gbps") > 0.0);
}

#[tokio::test]
async fn sink_reports_the_offset_of_a_flipped_byte_and_withholds_confirmation() {
    let (addr, mut reports) = start_sink().await;
    let mut data = pattern_at(0, 150_000).to_vec();
    data[100_000] ^= 1;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(&data).await.expect("write");
    stream.shutdown().await.expect("half-close");
    let mut confirmation = Vec::new();
    let _ = stream.read_to_end(&mut confirmation).await;
    assert!(confirmation.is_empty(), "no confirmation for corrupt data");
    match reports.recv().await.expect("a sink report") {
        Err(Error::Corrupted { offset }) => assert_eq!(offset, 100_000),
        other => panic!("expected corruption at offset 100000, got {other:?}"),
    }
}

#[tokio::test]
async fn source_fails_when_the_confirmed_count_differs() {
    let (listener, addr) = loopback().await;
    // A sink that loses one byte.
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.expect("read");
        let count = all.len() as u64 - 1;
        stream.write_all(&count.to_le_bytes()).await.expect("write");
    });
    match source(addr, 1, Duration::from_millis(50)).await {
        Err(Error::Lost { sent, confirmed }) => assert_eq!(confirmed, sent - 1),
        other => panic!("expected a lost-bytes error, got {other:?}"),
    }
}

#[tokio::test]
async fn rr_percentiles_are_plausible_on_loopback() {
    let addr = start_echo(None).await;
    let report = rr(addr, 1024, RUN).await.expect("rr run");
    let (p50, p99) = (report.quantile_us(0.5), report.quantile_us(0.99));
    assert!(report.samples.len() > 100, "{report}");
    assert!(
        0.0 < p50 && p50 <= p99 && p99 < 20_000.0,
        "loopback round trips: {report}"
    );
    assert_eq!(
        field(&report.to_string(), "exchanges"),
        Some(report.samples.len() as f64)
    );
}

#[tokio::test]
async fn connect_rate_counts_completed_connections() {
    let addr = start_echo(Some(CONNECT_REQUEST.len() as u64)).await;
    let report = connect_rate(addr, 4, RUN).await.expect("connect-rate run");
    assert!(report.connections > 20, "{report}");
    let printed = field(&report.to_string(), "per_second").expect("per_second");
    assert!((printed - report.per_second()).abs() < 1.0, "{report}");
}

#[tokio::test]
async fn hold_keeps_every_connection_usable() {
    let addr = start_echo(None).await;
    let mut seen = 0;
    let report = hold(addr, 50, Duration::from_millis(100), |open| seen = open)
        .await
        .expect("hold run");
    assert_eq!(seen, 50, "all open before the hold");
    assert_eq!((report.connections, report.echoed), (50, 50));
}
