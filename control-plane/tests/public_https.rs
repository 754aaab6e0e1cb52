//! The public HTTPS endpoint as a gateway operator meets it: real `curl` against 127.0.0.1,
//! trusting only the mesh's `bundle.pem`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferrule_control_plane::config::LimitsConfig;
use ferrule_control_plane::metrics::Metrics;
use ferrule_control_plane::offline_crls;
use ferrule_control_plane::public::{
    PublicDocuments, PublicLimits, public_server_config, serve_public,
};
use ferrule_identity::testing::TestCa;
use ferrule_identity::tls::{self, CertSlot};
use ferrule_identity::{RevocationReason, RevokedSerial, SpiffeId};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const HOUR: Duration = Duration::from_secs(3600);

struct Server {
    test: TestCa,
    addr: SocketAddr,
    documents: watch::Sender<Arc<PublicDocuments>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start() -> Self {
        let test = TestCa::new("example.org");
        let id = SpiffeId::control_plane(test.ca.bundle().trust_domain());
        let (svid, key) = test
            .ca
            .issue_with_new_key(&id, HOUR, &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap();
        let cert = CertSlot::certified_key(
            &tls::crypto_provider(),
            svid.full_chain(),
            key.serialize_der(),
        )
        .unwrap();
        let config = public_server_config(Arc::new(CertSlot::new(cert)));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let docs = documents(&test, &[], 1);
        let (documents, watched) = watch::channel(Arc::new(docs));
        let (stop, stopped) = oneshot::channel();
        let limits = PublicLimits {
            limits: LimitsConfig::default(),
            metrics: Metrics::new(&mut Registry::default()),
        };
        let task = tokio::spawn(serve_public(
            listener,
            config,
            watched,
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            test,
            addr,
            documents,
            stop: Some(stop),
            task,
        }
    }

    fn current(&self) -> Arc<PublicDocuments> {
        self.documents.borrow().clone()
    }

    async fn curl(&self, args: &[&str], path: &str) -> Fetched {
        let out = self.curl_raw(args, path).await;
        assert!(
            out.status.success(),
            "curl {args:?} {path} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Fetched::parse(&out.stdout)
    }

    async fn curl_raw(&self, args: &[&str], path: &str) -> std::process::Output {
        tokio::process::Command::new("curl")
            .args([
                "-sS",
                "-i",
                "--noproxy",
                "*",
                "--max-time",
                "20",
                "--cacert",
            ])
            .arg(self.test.layout.bundle())
            .args(args)
            .arg(format!("https://{}{path}", self.addr))
            .output()
            .await
            .expect("curl is installed by cargo xtask setup")
    }
}

fn documents(test: &TestCa, revoked: &[RevokedSerial], number: u64) -> PublicDocuments {
    let now = SystemTime::now();
    let crl = test
        .ca
        .sign_crl(revoked, number, now, now + 24 * HOUR)
        .unwrap();
    let offline = offline_crls::load(&test.layout.offline_crls(), &test.ca).unwrap();
    PublicDocuments::new(test.ca.bundle(), Arc::new(crl), &offline, number).unwrap()
}

/// What `curl -i` printed: status line, headers (names lowercased) and body bytes.
struct Fetched {
    status_line: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Fetched {
    fn parse(raw: &[u8]) -> Self {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Self {
            status_line,
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_the_crl_and_bundles_over_h2_and_http1() {
    let server = Server::start().await;
    let docs = server.current();

    let pem = server.curl(&[], "/crl.pem").await;
    assert_eq!(pem.status, 200, "{}", pem.status_line);
    assert!(
        pem.status_line.starts_with("HTTP/2"),
        "ALPN h2: {}",
        pem.status_line
    );
    assert_eq!(pem.header("content-type"), "application/x-pem-file");
    assert_eq!(pem.header("cache-control"), "public, max-age=60");
    let pem = String::from_utf8(pem.body).unwrap();
    assert!(
        pem.starts_with(&docs.crl.pem()),
        "the issuing CA's CRL first"
    );
    assert_eq!(
        pem.matches("BEGIN X509 CRL").count(),
        3,
        "then root's and intermediate's"
    );

    let der = server.curl(&["--http1.1"], "/crl").await;
    assert!(
        der.status_line.starts_with("HTTP/1.1 200"),
        "{}",
        der.status_line
    );
    assert_eq!(der.header("content-type"), "application/pkix-crl");
    assert_eq!(der.body, docs.crl.der());

    let bundle = server.curl(&[], "/bundle.pem").await;
    assert_eq!(bundle.status, 200);
    assert_eq!(
        String::from_utf8(bundle.body).unwrap(),
        server.test.ca.bundle().to_pem()
    );
    assert_eq!(
        std::fs::read_to_string(server.test.layout.bundle()).unwrap(),
        docs.bundle_pem,
        "served bundle is the one `ca init` wrote"
    );

    let spiffe = server.curl(&[], "/.well-known/spiffe-bundle").await;
    assert_eq!(spiffe.header("content-type"), "application/json");
    let set: serde_json::Value = serde_json::from_slice(&spiffe.body).unwrap();
    assert_eq!(set["spiffe_sequence"], 1);
    assert_eq!(set["spiffe_refresh_hint"], 300);
    let key = &set["keys"][0];
    assert_eq!(key["use"], "x509-svid");
    assert_eq!(key["kty"], "EC");
    let x5c = STANDARD
        .decode(key["x5c"][0].as_str().expect("x5c[0] is a string"))
        .unwrap();
    assert_eq!(x5c, server.test.ca.bundle().roots()[0].as_ref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_crl_is_served_as_soon_as_it_is_published() {
    let server = Server::start().await;
    let before = server.curl(&[], "/crl").await;
    assert_eq!(before.body, server.current().crl.der());

    let leaf = server
        .test
        .ca
        .issue_with_new_key(
            &SpiffeId::parse("spiffe://example.org/ns/shop/sa/web").unwrap(),
            HOUR,
            &[],
            &[],
        )
        .unwrap()
        .0;
    let revoked = RevokedSerial {
        serial: leaf.serial.clone(),
        revoked_at: SystemTime::now(),
        reason: RevocationReason::KeyCompromise,
    };
    let next = Arc::new(documents(&server.test, &[revoked], 2));
    server.documents.send(next.clone()).unwrap();

    let after = server.curl(&[], "/crl").await;
    assert_ne!(
        after.body, before.body,
        "expected the new CRL, got the old one"
    );
    assert_eq!(after.body, next.crl.der());
    let pem = server.curl(&[], "/crl.pem").await;
    assert!(
        String::from_utf8(pem.body)
            .unwrap()
            .starts_with(&next.crl.pem())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_404_other_methods_405_and_head_has_no_body() {
    let server = Server::start().await;
    let missing = server.curl(&[], "/keys").await;
    assert_eq!(missing.status, 404, "{}", missing.status_line);
    assert_eq!(missing.body, b"not found\n");

    let post = server.curl(&["-X", "POST"], "/crl.pem").await;
    assert_eq!(post.status, 405, "{}", post.status_line);
    assert_eq!(post.header("allow"), "GET, HEAD");

    for version in ["--http1.1", "--http2"] {
        let head = server.curl(&["-I", version], "/crl").await;
        assert_eq!(head.status, 200, "{version}: {}", head.status_line);
        assert_eq!(
            head.header("content-length"),
            server.current().crl.der().len().to_string(),
            "{version}"
        );
        assert!(head.body.is_empty(), "{version}: HEAD returned a body");
    }
}

/// Collects formatted log lines so the test can see what an operator would.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn send_and_wait_for_close(addr: SocketAddr, bytes: &[u8]) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "server kept a garbage connection open");
}

// Current-thread runtime: every server task runs on this thread and logs to `set_default`.
#[tokio::test]
async fn garbage_and_old_tls_are_logged_and_do_not_stop_the_server() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = Server::start().await;

    send_and_wait_for_close(server.addr, b"GET /crl.pem HTTP/1.1\r\nHost: x\r\n\r\n").await;
    send_and_wait_for_close(server.addr, &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3]).await;
    drop(TcpStream::connect(server.addr).await.unwrap());
    let old = server.curl_raw(&["--tls-max", "1.2"], "/crl").await;
    assert!(
        !old.status.success(),
        "a TLS 1.2-only client must be refused"
    );

    let after = server.curl(&[], "/crl").await;
    assert_eq!(after.status, 200, "server stopped serving after garbage");
    assert_eq!(after.body, server.current().crl.der());

    let text = logs.text();
    for reason in ["malformed", "incompatible"] {
        assert!(
            text.contains(&format!("reason=\"{reason}\"")),
            "expected a handshake failure logged with reason={reason}, logs:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_listener_and_stalled_handshakes() {
    let mut server = Server::start().await;
    assert_eq!(server.curl(&[], "/crl").await.status, 200);
    // A client that connects and never speaks: shutdown must not wait for its handshake timeout.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), &mut server.task)
        .await
        .expect("serve_public returned promptly after shutdown")
        .expect("serve_public did not panic");
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), stalled.read_to_end(&mut sink)).await;
    assert!(
        closed.is_ok(),
        "stalled connection still open after shutdown"
    );
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "listener still accepting after shutdown"
    );
}
