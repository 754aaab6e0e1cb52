//! Hostile clients against the real control-plane binary (issue 12, finding 5): half-open TLS
//! handshakes, a flood of `Node.Join` with garbage tokens, and HTTP/2 Rapid Reset and
//! MadeYouReset. Timings are compared with an idle baseline measured in the same test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrule_identity::SpiffeId;
use ferrule_identity::csr::{build_csr, generate_workload_key};
use ferrule_identity::tls::CertSlot;
use ferrule_proto::v1::{self, identity_client::IdentityClient, node_client::NodeClient};
use ferrule_tests::ControlPlaneFixture;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const WORKLOAD: &str = "spiffe://example.org/ns/shop/sa/web";

fn limit_series(listener: &str, limit: &str) -> String {
    format!("ferrule_control_plane_limit_hits_total{{listener=\"{listener}\",limit=\"{limit}\"}}")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn p99(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

/// How long a new admin connection takes to do its first call (TCP, mTLS, HTTP/2, RPC), `count`
/// times.
async fn connect_times(
    cp: &ControlPlaneFixture,
    admin: &Arc<CertSlot>,
    count: usize,
) -> Vec<Duration> {
    let mut times = Vec::new();
    for _ in 0..count {
        let start = Instant::now();
        let mut client =
            ferrule_proto::v1::admin_client::AdminClient::new(cp.channel(Some(admin.clone())));
        client
            .list_nodes(v1::ListNodesRequest::default())
            .await
            .expect("a legitimate admin call");
        times.push(start.elapsed());
    }
    times
}

/// The first bytes of a TLS ClientHello record that announces far more than follows.
const PARTIAL_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x5a, 0x5a, 0x5a, 0x5a,
];

#[tokio::test(flavor = "multi_thread")]
async fn half_open_handshakes_do_not_delay_a_legitimate_connection() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.add_config("limits:\n  handshake_timeout: 3s\n  connections:\n    per_source: 256\n");
    cp.start();
    let admin = Arc::new(
        CertSlot::from_pem_files(&cp.layout.admin_cert(), &cp.layout.admin_key()).unwrap(),
    );
    connect_times(&cp, &admin, 2).await;
    let idle = median(connect_times(&cp, &admin, 7).await);

    // 1,000 connections from another loopback address: half say nothing, half start a
    // ClientHello and stall.
    let attacker = SocketAddr::from(([127, 0, 0, 2], 0));
    let mut half_open = Vec::new();
    for i in 0..1000 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(attacker).unwrap();
        let mut tcp = socket.connect(cp.addr).await.expect("TCP connect");
        if i % 2 == 1 {
            // Refused connections are closed by the server: writing may fail.
            let _ = tcp.write_all(PARTIAL_CLIENT_HELLO).await;
        }
        half_open.push(tcp);
    }
    let attacked = median(connect_times(&cp, &admin, 7).await);
    assert!(
        attacked <= idle * 5,
        "a legitimate connection took {attacked:?} under 1,000 half-open handshakes, idle {idle:?}"
    );

    let per_source = limit_series("grpc", "connections.per_source");
    let refused = cp.counter(&per_source);
    assert!(
        refused >= 500.0,
        "connections over limits.connections.per_source (256) were refused and counted: {refused}"
    );
    // The 256 admitted ones are dropped at the handshake deadline.
    let timeouts = limit_series("grpc", "handshake_timeout");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cp.counter(&timeouts) < 256.0 {
        assert!(
            Instant::now() < deadline,
            "half-open handshakes were not timed out: {}",
            cp.counter(&timeouts)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(half_open);
}

/// Garbage joins as fast as `lanes` concurrent calls on one connection without a client
/// certificate go, until `stop`; counts the calls.
fn flood_joins(
    cp: &ControlPlaneFixture,
    lanes: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let channel_tls = cp.client_tls(None);
    let addr = cp.addr;
    let csr = build_csr(
        &generate_workload_key().unwrap(),
        &SpiffeId::parse("spiffe://example.org/node/joining").unwrap(),
    )
    .unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = NodeClient::new(ferrule_proto::channel::lazy(addr, channel_tls));
            let calls = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..lanes {
                let (mut client, csr, stop, calls) =
                    (client.clone(), csr.clone(), stop.clone(), calls.clone());
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let token = format!(
                            "fjt.{:016x}.{:064x}",
                            rand_u64(),
                            u128::from(rand_u64()) << 64 | u128::from(rand_u64())
                        );
                        let request = v1::JoinRequest {
                            token,
                            csr: csr.clone(),
                            ..Default::default()
                        };
                        let refused = client.join(request).await.expect_err("a garbage token");
                        assert!(
                            matches!(
                                refused.code(),
                                tonic::Code::ResourceExhausted | tonic::Code::Unauthenticated
                            ),
                            "{refused:?}"
                        );
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for task in tasks {
                task.await.expect("flood lane");
            }
            calls.load(Ordering::Relaxed)
        })
    })
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

async fn sign_times(
    client: &mut IdentityClient<tonic::transport::Channel>,
    csr: &[u8],
    count: usize,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        client
            .sign(v1::SignRequest {
                spiffe_id: WORKLOAD.into(),
                csr: csr.to_vec(),
            })
            .await
            .expect("a legitimate sign");
        times.push(start.elapsed());
    }
    times
}

/// Before: each well-formed garbage token was checked by `consume_token`, a write queued on the
/// store's single writer that `Sign` records its certificates through, and nothing limited the
/// rate. Now joins are rate limited before any work and unknown tokens never reach the writer.
#[tokio::test(flavor = "multi_thread")]
async fn a_join_flood_does_not_delay_sign() {
    let mut cp = ControlPlaneFixture::new("example.org");
    // The test signs far more often than a node would.
    cp.add_config(ferrule_tests::bench::sign::UNLIMITED_SIGN);
    cp.start();
    let node = cp
        .join_node("n1", &["spiffe://example.org/ns/shop/sa/*"])
        .await;
    let mut client = IdentityClient::new(cp.channel(Some(node)));
    let csr = build_csr(
        &generate_workload_key().unwrap(),
        &SpiffeId::parse(WORKLOAD).unwrap(),
    )
    .unwrap();
    sign_times(&mut client, &csr, 20).await;

    // Idle and flooded phases alternate, so that load from elsewhere on the machine falls on
    // both alike; a noisy round is measured again, up to three times.
    let (mut attempts, mut calls) = (Vec::new(), 0);
    for _ in 0..3 {
        let (mut idle, mut flooded) = (Vec::new(), Vec::new());
        for _ in 0..4 {
            idle.extend(sign_times(&mut client, &csr, 75).await);
            let stop = Arc::new(AtomicBool::new(false));
            let flood = flood_joins(&cp, 64, stop.clone());
            tokio::time::sleep(Duration::from_millis(300)).await;
            flooded.extend(sign_times(&mut client, &csr, 75).await);
            stop.store(true, Ordering::Relaxed);
            calls += tokio::task::spawn_blocking(move || flood.join().expect("flood thread"))
                .await
                .unwrap();
        }
        let (idle, flooded) = (p99(&idle), p99(&flooded));
        attempts.push((idle, flooded, calls));
        if flooded <= idle * 2 {
            break;
        }
    }
    println!("Sign p99 idle, p99 under the flood, flood calls: {attempts:?}");
    let (idle, flooded, _) = *attempts.last().unwrap();
    assert!(
        flooded <= idle * 2,
        "Sign p99 under a join flood {flooded:?} > 2 x idle p99 {idle:?} (attempts: {attempts:?})"
    );
    let joins = |reason: &str| {
        cp.counter(&format!(
            "ferrule_node_joins_total{{method=\"join_token\",result=\"refused\",reason=\"{reason}\"}}"
        ))
    };
    let (limited, unknown) = (joins("source_rate_limited"), joins("unknown_token"));
    assert!(
        calls > 500 && limited > 0.0 && unknown > 0.0 && limited + unknown >= calls as f64,
        "a flood of {calls} joins, {limited} refused by the per-source rate limit and {unknown} \
         as unknown tokens"
    );
}

type H2Client = h2::client::SendRequest<tonic::codegen::Bytes>;
type H2Connection = tokio::task::JoinHandle<Result<(), h2::Error>>;

/// An HTTP/2 connection over TLS without a client certificate.
async fn h2_connect(cp: &ControlPlaneFixture, addr: SocketAddr) -> (H2Client, H2Connection) {
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    let tls = tokio_rustls::TlsConnector::from(cp.client_tls(None))
        .connect(ServerName::try_from("ferrule-control-plane").unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake: {e}\n{}", cp.process().output()));
    let (client, connection) = h2::client::handshake(tls).await.expect("HTTP/2 handshake");
    (client, tokio::spawn(connection))
}

fn request(addr: SocketAddr) -> http::request::Builder {
    http::Request::post(format!("https://{addr}/ferrule.v1.Node/Join"))
        .header("content-type", "application/grpc")
}

/// Bursts of `burst` streams made by `open` (a handful past the limit under test, so that little
/// is left unread when the server hangs up) until the server closes the connection.
async fn in_bursts(
    mut client: H2Client,
    connection: &H2Connection,
    burst: usize,
    mut open: impl FnMut(&mut H2Client) -> Result<(), h2::Error>,
) {
    for _ in 0..100 {
        for _ in 0..burst {
            let Ok(ready) = client.ready().await else {
                return;
            };
            client = ready;
            if open(&mut client).is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if connection.is_finished() {
            return;
        }
    }
}

/// Rapid Reset (CVE-2023-44487): open a stream and cancel it at once, again and again.
fn rapid_reset(addr: SocketAddr) -> impl FnMut(&mut H2Client) -> Result<(), h2::Error> {
    move |client| {
        let (_, mut stream) = client.send_request(request(addr).body(()).unwrap(), false)?;
        stream.send_reset(h2::Reason::CANCEL);
        Ok(())
    }
}

/// MadeYouReset (CVE-2025-8671): streams the server has to reset itself, here requests that end
/// before the body their content-length promised (a stream error, PROTOCOL_ERROR).
fn made_you_reset(addr: SocketAddr) -> impl FnMut(&mut H2Client) -> Result<(), h2::Error> {
    move |client| {
        let malformed = request(addr)
            .header("content-length", "5")
            .body(())
            .unwrap();
        client.send_request(malformed, true).map(drop)
    }
}

/// The server closed the connection: with GOAWAY(ENHANCE_YOUR_CALM) when the client read it
/// before the socket closed (what it wrote is checked on the server's side, by the metric).
async fn assert_closed(connection: H2Connection, what: &str) {
    let ended = tokio::time::timeout(Duration::from_secs(20), connection)
        .await
        .unwrap_or_else(|_| panic!("{what}: the server did not close the connection"))
        .expect("connection task");
    let error = ended.expect_err("closed with an error");
    let goaway = error.is_go_away() && error.is_remote();
    assert!(
        (goaway && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)) || error.is_io(),
        "{what}: expected GOAWAY(ENHANCE_YOUR_CALM) from the server, got {error:?}"
    );
}

/// Before: tonic passed hyper no `max_local_error_reset_streams`, which hyper takes as
/// "unlimited", so MadeYouReset streams never ended the connection; neither pattern was counted.
#[tokio::test(flavor = "multi_thread")]
async fn http2_rapid_reset_and_made_you_reset_get_goaway_on_both_listeners() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    for (listener, addr) in [("grpc", cp.addr), ("public", cp.public_addr)] {
        let (client, connection) = h2_connect(&cp, addr).await;
        in_bursts(client, &connection, 30, rapid_reset(addr)).await;
        assert_closed(connection, &format!("rapid reset on {listener}")).await;
        let (client, connection) = h2_connect(&cp, addr).await;
        in_bursts(client, &connection, 64, made_you_reset(addr)).await;
        assert_closed(connection, &format!("MadeYouReset on {listener}")).await;
        for limit in [
            "http2.max_pending_accept_reset_streams",
            "http2.max_local_error_reset_streams",
        ] {
            let series = limit_series(listener, limit);
            assert_eq!(cp.counter(&series), 1.0, "{series}");
        }
    }
    let admin = cp.admin().list_nodes(v1::ListNodesRequest::default()).await;
    assert!(admin.is_ok(), "the control plane still serves: {admin:?}");
}

/// Before: h2 answered an oversized header block with a bare 431 that nothing counted and that
/// gRPC clients report as an opaque protocol error.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_header_list_is_refused_with_its_size_and_counted() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.add_config("limits:\n  http2:\n    max_header_list_size: 4096\n");
    cp.start();
    let (mut client, _connection) = h2_connect(&cp, cp.addr).await;
    let oversized = request(cp.addr)
        .header("x-pad", "a".repeat(5000))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(oversized, true).expect("send");
    let response = response.await.expect("a response, not a reset");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header("grpc-status").as_deref(),
        Some("8"),
        "RESOURCE_EXHAUSTED"
    );
    let message = header("grpc-message").unwrap_or_default();
    assert!(
        message.contains("max_header_list_size") && message.contains("4096"),
        "the refusal names the limit: {message}"
    );
    let series = limit_series("grpc", "http2.max_header_list_size");
    assert_eq!(cp.counter(&series), 1.0, "{series}");
}

/// An HTTP/2 connection (TLS, preface, SETTINGS) whose client then neither reads nor writes, so
/// the server's keepalive PING goes unanswered. Held open until dropped.
async fn silent_http2_peer(
    cp: &ControlPlaneFixture,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    let mut tls_config = (*cp.client_tls(None)).clone();
    tls_config.alpn_protocols = vec![b"h2".to_vec()];
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
        .connect(ServerName::try_from("ferrule-control-plane").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
    tls.write_all(&hello).await.expect("HTTP/2 preface");
    tls.flush().await.expect("flush");
    tls
}

/// Before: hyper closed such connections without a trace (and on the public listener counted
/// them as `header_read_timeout`).
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_stops_answering_pings_is_closed_and_counted() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.add_config("limits:\n  http2:\n    keepalive_interval: 1s\n    keepalive_timeout: 1s\n");
    cp.start();
    for (listener, addr) in [("grpc", cp.addr), ("public", cp.public_addr)] {
        let _silent = silent_http2_peer(&cp, addr).await;
        let series = limit_series(listener, "http2.keepalive_timeout");
        let deadline = Instant::now() + Duration::from_secs(15);
        while cp.counter(&series) < 1.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(cp.counter(&series), 1.0, "{series}");
        let misread = limit_series(listener, "header_read_timeout");
        assert_eq!(cp.counter(&misread), 0.0, "{misread}");
    }
}
