//! What the ends refuse: the wrong server, denied or unreachable destinations, TLS 1.2, clients
//! without a certificate, and bytes that are not TLS at all.

use std::sync::Arc;
use std::time::Duration;

use ferrule_identity::VerifyError;
use ferrule_identity::tls::{self, ExpectedServer, SpiffeServerVerifier};
use http::StatusCode;
use rustls::AlertDescription;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use super::{CLIENT, Direct, Mesh, SERVER, echo_app, id, issue};
use crate::proxy::{ALPN_H2, HandshakeError, OutboundError};

const WAIT: Duration = Duration::from_secs(10);

/// The tunnel works at all: a refusal test that passes against a dead server proves nothing.
pub(super) async fn assert_serving(mesh: &Mesh, addr: std::net::SocketAddr) {
    let app = echo_app().await;
    let mut stream = mesh
        .pool
        .connect(&mesh.key(addr), &mesh.client, &mesh.bundle, app)
        .await
        .expect("server stopped serving");
    stream.write_all(b"ok").await.unwrap();
    let mut back = [0u8; 2];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ok");
}

#[tokio::test]
async fn a_server_with_another_identity_is_refused_naming_both() {
    let mesh = Mesh::new();
    let server = mesh.server(Direct::default()).await;
    let expected = "spiffe://example.org/ns/b/sa/someone-else";
    let mut key = mesh.key(server.addr);
    key.destination = id(expected);
    let err = mesh
        .pool
        .connect(&key, &mesh.client, &mesh.bundle, echo_app().await)
        .await
        .expect_err("wrong server accepted");
    match &err {
        OutboundError::Handshake {
            source: HandshakeError::Certificate(VerifyError::WrongId { expected: e, got }),
            ..
        } => {
            assert_eq!((e.as_str(), got.as_str()), (expected, SERVER));
        }
        other => panic!("expected a wrong-identity handshake error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(expected) && message.contains(SERVER),
        "message names both IDs: {message}"
    );
}

#[tokio::test]
async fn a_policy_denial_is_401_and_an_unreachable_app_503() {
    let mesh = Mesh::new();
    let denying = mesh
        .server(Direct {
            deny: Some(id(CLIENT)),
        })
        .await;
    let err = mesh
        .pool
        .connect(
            &mesh.key(denying.addr),
            &mesh.client,
            &mesh.bundle,
            echo_app().await,
        )
        .await
        .expect_err("denied peer got through");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED), "{err}");

    let allowing = mesh.server(Direct::default()).await;
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = mesh
        .pool
        .connect(&mesh.key(allowing.addr), &mesh.client, &mesh.bundle, closed)
        .await
        .expect_err("connected to a closed port");
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE), "{err}");
    // A refused stream does not take the tunnel down.
    assert_serving(&mesh, allowing.addr).await;
}

/// HTTP/2 preface, empty SETTINGS, GOAWAY: the server answers and then closes, so a client
/// that waits for the close (`-ign_eof`) has seen whether its certificate was accepted.
const H2_HELLO_GOODBYE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0\0\0\x08\x07\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// `openssl s_client` against the server; returns whether it exited successfully and its output.
async fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-ign_eof", "-connect", &addr.to_string()])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run openssl");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(H2_HELLO_GOODBYE).await;
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("openssl did not finish")
        .unwrap();
    drop(stdin);
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        stdout.into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The client's certificate and key as files, the chain apart as `s_client` wants it.
fn client_files(mesh: &Mesh, dir: &std::path::Path) -> Vec<String> {
    let (cert, key) = issue(&mesh.ca, CLIENT);
    let (leaf, chain) = cert.certified.cert.split_first().unwrap();
    let files = [
        (
            "-cert",
            "cert.pem",
            ferrule_identity::pem_encode_certs(std::slice::from_ref(leaf)),
        ),
        (
            "-cert_chain",
            "chain.pem",
            ferrule_identity::pem_encode_certs(chain),
        ),
        ("-key", "key.pem", key.serialize_pem()),
    ];
    let mut args = Vec::new();
    for (flag, name, pem) in files {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        args.extend([flag.to_string(), path.display().to_string()]);
    }
    args
}

#[tokio::test]
async fn a_tls12_client_is_refused() {
    let mesh = Mesh::new();
    let server = mesh.server(Direct::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let files = client_files(&mesh, dir.path());
    let with = |version: &'static str| {
        let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
        args.push(version);
        args
    };

    // Same client, same certificate: TLS 1.3 gets through, TLS 1.2 does not.
    let (ok, text) = s_client(server.addr, &with("-tls1_3")).await;
    assert!(
        ok && text.contains("TLSv1.3") && !text.contains("alert"),
        "TLS 1.3 control handshake failed:\n{text}"
    );
    let (ok, text) = s_client(server.addr, &with("-tls1_2")).await;
    assert!(!ok, "TLS 1.2 handshake succeeded:\n{text}");
    assert!(
        text.contains("protocol version"),
        "expected a protocol_version alert:\n{text}"
    );
    assert_serving(&mesh, server.addr).await;
}

#[tokio::test]
async fn a_client_without_certificate_is_refused() {
    let mesh = Mesh::new();
    let server = mesh.server(Direct::default()).await;
    let verifier =
        SpiffeServerVerifier::new(mesh.bundle.clone(), ExpectedServer::Exact(id(SERVER)));
    let config = tls::client_config(None, verifier, &[ALPN_H2]);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::from(server.addr.ip());
    // In TLS 1.3 the client finishes first; the refusal arrives as an alert on the next read.
    let failure = match TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Err(e) => e,
        Ok(mut tls) => {
            let read = tokio::time::timeout(WAIT, tls.read(&mut [0u8; 64]))
                .await
                .expect("no answer");
            read.expect_err("the server accepted a client without a certificate")
        }
    };
    match HandshakeError::from(failure) {
        HandshakeError::Tls(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        )) => {}
        other => panic!("expected a certificate_required alert, got {other:?}"),
    }
    assert_serving(&mesh, server.addr).await;
}

#[tokio::test]
async fn garbage_is_dropped_and_the_server_keeps_serving() {
    let mesh = Mesh::new();
    let server = mesh.server(Direct::default()).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02garbage")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server kept a garbage connection open");
    assert_serving(&mesh, server.addr).await;
}

/// A peer that accepts TCP and then says nothing: a burst of streams towards it fails together
/// after one budget, instead of each waiting for the dials queued before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_towards_a_silent_peer_fails_within_one_budget() {
    let mesh = Mesh::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            held.push(tcp);
        }
    });
    let budget = Duration::from_millis(300);
    let pool = crate::proxy::TunnelPool::new(crate::proxy::PoolConfig {
        connect_timeout: budget,
        ..Default::default()
    });
    let app = echo_app().await;
    let started = tokio::time::Instant::now();
    let burst = (0..20).map(|_| {
        let (pool, key, client, bundle) = (
            pool.clone(),
            mesh.key(addr),
            mesh.client.clone(),
            mesh.bundle.clone(),
        );
        tokio::spawn(async move { pool.connect(&key, &client, &bundle, app).await })
    });
    for result in futures::future::join_all(burst).await {
        // The one that dialed timed out; the rest share its failure or ran out of budget
        // waiting for it.
        let result = result.unwrap();
        assert!(
            matches!(&result, Err(OutboundError::Timeout { after, .. }) if *after == budget)
                || matches!(&result, Err(OutboundError::DialFailed { reason, .. }) if reason.contains("did not answer")),
            "{result:?}"
        );
    }
    // One after another they would take 20 budgets (6 s).
    let took = started.elapsed();
    assert!(took < 10 * budget, "the burst took {took:?}");
    let dials = accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        dials <= 2,
        "waiters must not each dial the silent peer: {dials} dials"
    );
}

/// An app that never accepts; `given_up` fires when the server stops waiting for it.
struct NeverAccepts {
    given_up: Arc<tokio::sync::Notify>,
}

struct NotifyOnDrop(Arc<tokio::sync::Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[tonic::async_trait]
impl crate::proxy::InboundTarget for NeverAccepts {
    async fn connect(
        &self,
        _peer: &crate::proxy::Peer,
        _dst: std::net::SocketAddr,
    ) -> Result<crate::proxy::Admitted, crate::proxy::InboundRefusal> {
        let _waiting = NotifyOnDrop(self.given_up.clone());
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_connecting_for_a_client_that_gave_up() {
    let mesh = Mesh::new();
    let given_up = Arc::new(tokio::sync::Notify::new());
    let server = mesh
        .server(NeverAccepts {
            given_up: given_up.clone(),
        })
        .await;
    let pool = crate::proxy::TunnelPool::new(crate::proxy::PoolConfig {
        connect_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let app = echo_app().await;
    let result = pool
        .connect(&mesh.key(server.addr), &mesh.client, &mesh.bundle, app)
        .await;
    assert!(
        matches!(result, Err(OutboundError::Timeout { .. })),
        "{result:?}"
    );
    // Long before the server's own 10 s app-connect budget.
    tokio::time::timeout(Duration::from_secs(5), given_up.notified())
        .await
        .expect("the server kept connecting after the client reset the stream");
}
