//! The published CRLs used by a real gateway outside the mesh: nginx with `ssl_verify_client on`
//! and `ssl_crl` pointing at `/crl.pem`. nginx checks revocation along the whole chain
//! (OpenSSL's CRL_CHECK_ALL), so this needs the offline CAs' CRLs as well as the issuing CA's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrule_identity::csr::{build_csr, generate_workload_key};
use ferrule_identity::tls::CertSlot;
use ferrule_identity::{SpiffeId, pem_encode_certs};
use ferrule_proto::v1::{self, identity_client::IdentityClient};
use ferrule_tests::{Child, ControlPlaneFixture, free_port, process::wait_for_port};

const WEB: &str = "spiffe://example.org/ns/shop/sa/web";
const GATEWAY: &str = "spiffe://example.org/ns/shop/sa/gateway";

/// An SVID written as `<name>.crt` (leaf + chain) and `<name>.key`; returns (cert, key, serial).
async fn issue_files(
    cp: &ControlPlaneFixture,
    node: &Arc<CertSlot>,
    id: &str,
    name: &str,
) -> (PathBuf, PathBuf, String) {
    let key = generate_workload_key().unwrap();
    let csr = build_csr(&key, &SpiffeId::parse(id).unwrap()).unwrap();
    let svid = IdentityClient::new(cp.channel(Some(node.clone())))
        .sign(v1::SignRequest {
            spiffe_id: id.into(),
            csr,
        })
        .await
        .expect("sign")
        .into_inner()
        .svid
        .expect("svid");
    let certs: Vec<_> = std::iter::once(svid.leaf.clone())
        .chain(svid.chain.iter().cloned())
        .map(Into::into)
        .collect();
    let (cert_path, key_path) = (
        cp.dir.path().join(format!("{name}.crt")),
        cp.dir.path().join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, pem_encode_certs(&certs)).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path, svid.serial)
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn fetch_crl(cp: &ControlPlaneFixture, to: &Path) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
        .arg(cp.layout.bundle())
        .arg(format!("https://{}/crl.pem", cp.public_addr))
        .arg("-o")
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "fetching the CRL: {}", text(&out));
    std::fs::read_to_string(to).unwrap()
}

/// `openssl verify -crl_check_all`: revocation checked for every certificate of the chain.
fn verify_chain(cp: &ControlPlaneFixture, cert: &Path, crl: &Path) -> String {
    let out = Command::new("openssl")
        .args(["verify", "-crl_check_all", "-CAfile"])
        .arg(cp.layout.bundle())
        .arg("-untrusted")
        .arg(cert)
        .arg("-CRLfile")
        .arg(crl)
        .arg(cert)
        .output()
        .unwrap();
    text(&out)
}

fn nginx_conf(dir: &Path, port: u16, cert: &Path, key: &Path, ca: &Path, crl: &Path) -> PathBuf {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{}}\nhttp {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    \
         ssl_protocols TLSv1.3;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    \
         ssl_client_certificate {};\n    ssl_verify_client on;\n    ssl_verify_depth 4;\n    \
         ssl_crl {};\n    location / {{ return 200 \"verified $ssl_client_verify\\n\"; }}\n  }}\n}}\n",
        cert.display(),
        key.display(),
        ca.display(),
        crl.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// HTTP status (and body, curl's errors) of a GET through the gateway with a client
/// certificate. The gateway's SVID names no host, so curl skips the server check: what is under
/// test is nginx checking the client.
fn get(port: u16, cert: &Path, key: &Path) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "5", "-w", "\n%{http_code}"])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg(format!("https://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    (code.to_owned(), format!("{body}{stderr}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_nginx_gateway_with_the_published_crls_refuses_only_the_revoked_client() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let node = cp
        .join_node("n1", &["spiffe://example.org/ns/shop/*"])
        .await;
    let (gw_cert, gw_key, _) = issue_files(&cp, &node, GATEWAY, "gateway").await;
    let (kept_cert, kept_key, _) = issue_files(&cp, &node, WEB, "kept").await;
    let (revoked_cert, revoked_key, serial) = issue_files(&cp, &node, WEB, "revoked").await;
    let out = cp.ferrule(&["revoke", "--serial", &serial, "--reason", "key-compromise"]);
    assert!(out.status.success(), "{}", text(&out));

    // One CRL per CA of the chain: issuing, then the offline intermediate and root.
    let crl = cp.dir.path().join("crl.pem");
    let deadline = Instant::now() + Duration::from_secs(3);
    while verify_chain(&cp, &revoked_cert, &crl).contains(": OK") || !crl.exists() {
        assert!(
            Instant::now() < deadline,
            "the revocation never reached the CRL"
        );
        fetch_crl(&cp, &crl);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pem = std::fs::read_to_string(&crl).unwrap();
    assert_eq!(pem.matches("BEGIN X509 CRL").count(), 3, "{pem}");
    let verdict = verify_chain(&cp, &revoked_cert, &crl);
    assert!(verdict.contains("certificate revoked"), "{verdict}");
    let verdict = verify_chain(&cp, &kept_cert, &crl);
    assert!(verdict.contains(": OK"), "whole chain checked: {verdict}");
    let metrics = cp.metrics();
    for ca in ["issuing", "intermediate", "root"] {
        let series = format!("ferrule_crl_next_update_timestamp_seconds{{ca=\"{ca}\"");
        assert!(metrics.contains(&series), "{series} missing: {metrics}");
    }

    let port = free_port().port();
    let dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf(
        dir.path(),
        port,
        &gw_cert,
        &gw_key,
        &cp.layout.bundle(),
        &crl,
    );
    let nginx = Child::spawn(
        Command::new("nginx")
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf),
    );
    wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10));

    let (code, body) = get(port, &kept_cert, &kept_key);
    assert_eq!(code, "200", "{body}\nnginx: {}", nginx.output());
    assert!(body.contains("verified SUCCESS"), "{body}");
    let (code, body) = get(port, &revoked_cert, &revoked_key);
    assert_eq!(code, "400", "the revoked client is refused: {body}");
    let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap();
    assert!(
        log.contains("certificate revoked"),
        "nginx error log: {log}"
    );
}
