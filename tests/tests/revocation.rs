//! Revocation and policy administration against the real control plane: revoked serials in the
//! CRL that `openssl verify -crl_check` honours, a real nginx gateway with `ssl_crl` (which checks
//! the whole chain, so it needs the offline CAs' CRLs too), revoked nodes without certificates,
//! and policy files rejected whole.

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

async fn sign(
    cp: &ControlPlaneFixture,
    node: &Arc<CertSlot>,
    id: &str,
) -> Result<v1::Svid, tonic::Status> {
    let csr = build_csr(
        &generate_workload_key().unwrap(),
        &SpiffeId::parse(id).unwrap(),
    )
    .unwrap();
    let response = IdentityClient::new(cp.channel(Some(node.clone())))
        .sign(v1::SignRequest {
            spiffe_id: id.into(),
            csr,
        })
        .await?;
    Ok(response.into_inner().svid.expect("svid"))
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn fetch_crl(cp: &ControlPlaneFixture, to: &Path) {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
        .arg(cp.layout.bundle())
        .arg(format!("https://{}/crl.pem", cp.public_addr))
        .arg("-o")
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "fetching the CRL: {}", text(&out));
}

/// `openssl verify -crl_check` of `svid` with the CRL at `crl`; returns its output.
fn openssl_verify(cp: &ControlPlaneFixture, svid: &v1::Svid, crl: &Path) -> String {
    let dir = cp.dir.path();
    let leaf = dir.join("leaf.pem");
    let chain = dir.join("untrusted.pem");
    std::fs::write(&leaf, pem_encode_certs(&[svid.leaf.clone().into()])).unwrap();
    let chain_certs: Vec<_> = svid.chain.iter().map(|c| c.clone().into()).collect();
    std::fs::write(&chain, pem_encode_certs(&chain_certs)).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(cp.layout.bundle())
        .arg("-untrusted")
        .arg(&chain)
        .arg("-CRLfile")
        .arg(crl)
        .arg(&leaf)
        .output()
        .unwrap();
    text(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_serial_is_in_the_crl_and_a_revoked_node_gets_no_certificates() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let node = cp
        .join_node("n1", &["spiffe://example.org/ns/shop/sa/*"])
        .await;
    let revoked = sign(&cp, &node, WEB).await.expect("sign");
    let kept = sign(&cp, &node, WEB).await.expect("sign");
    let crl = cp.dir.path().join("crl.pem");
    fetch_crl(&cp, &crl);
    assert!(
        openssl_verify(&cp, &revoked, &crl).contains(": OK"),
        "valid before revocation"
    );

    let out = cp.ferrule(&[
        "revoke",
        "--serial",
        &revoked.serial,
        "--reason",
        "key-compromise",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // The CRL is re-signed right after the change is stored.
    let deadline = Instant::now() + Duration::from_secs(3);
    let verdict = loop {
        fetch_crl(&cp, &crl);
        let verdict = openssl_verify(&cp, &revoked, &crl);
        if !verdict.contains(": OK") || Instant::now() > deadline {
            break verdict;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(verdict.contains("certificate revoked"), "{verdict}");
    let out = cp.ferrule(&["-o", "json", "certs"]);
    let certs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let status = |serial: &str| {
        certs
            .iter()
            .find(|c| c["serial"] == serial)
            .map(|c| c["status"].clone())
    };
    assert_eq!(status(&revoked.serial), Some("REVOKED".into()), "{certs:?}");
    assert_eq!(status(&kept.serial), Some("OK".into()), "{certs:?}");
    assert!(
        openssl_verify(&cp, &kept, &crl).contains(": OK"),
        "other serials stay valid"
    );

    let out = cp.ferrule(&["-o", "json", "revoke", "--node", "n1"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let serials = report["serials"].as_array().unwrap();
    assert!(
        serials.iter().any(|s| s == &kept.serial),
        "revoking the node revokes what was issued through it: {report}"
    );
    let refused = sign(&cp, &node, WEB)
        .await
        .expect_err("a revoked node gets no certificate");
    let metrics = cp.metrics();
    for series in [
        "ferrule_csr_total{node=\"n1\",result=\"issued\"} 2",
        "ferrule_revocations{kind=\"identity\"} 1",
        "ferrule_revocations{kind=\"serial\"} 3",
    ] {
        assert!(metrics.contains(series), "missing {series} in:\n{metrics}");
    }
    assert!(
        cp.process().output().contains("revoked"),
        "the control plane says why ({refused:?}):\n{}",
        cp.process().output()
    );
    let out = cp.ferrule(&["node", "token", "create", "--node", "n1"]);
    assert!(
        !out.status.success(),
        "no join token for a revoked node: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("ferrule revoke --lift --node n1"),
        "{}",
        text(&out)
    );

    let out = cp.ferrule(&["revoke", "--lift", "--node", "n1"]);
    assert!(out.status.success(), "{}", text(&out));
    let rejoined = cp
        .join_node("n1", &["spiffe://example.org/ns/shop/sa/*"])
        .await;
    sign(&cp, &rejoined, WEB)
        .await
        .expect("a lifted node may join and sign again");
    sign(&cp, &node, WEB)
        .await
        .expect_err("its old, revoked certificate stays revoked");

    let out = cp.ferrule(&["revoke", "--serial", "not-hex"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not hexadecimal"), "{}", text(&out));
    let out = cp.ferrule(&["revoke"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", text(&out));
}

const GOOD: &str = "apiVersion: ferrule.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  action: ALLOW
  rules:
    - from: [{namespace: web}]
      ports: [8080]
";

fn policy_keys(cp: &ControlPlaneFixture) -> Vec<String> {
    let out = cp.ferrule(&["-o", "json", "policy", "get"]);
    assert!(out.status.success(), "{}", text(&out));
    let policies: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    policies
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_policy_files_are_rejected_whole_with_the_file_field_and_reason() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let file = |name: &str, body: &str| {
        let path = cp.dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.display().to_string()
    };
    let good = file("good.yaml", GOOD);
    let out = cp.ferrule(&["policy", "apply", "-f", &good]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("policy shop/allow-web configured"),
        "{}",
        text(&out)
    );

    let second = GOOD.replace("allow-web", "allow-more");
    let cases = [
        (
            "unknown-field.yaml",
            GOOD.replace("ports:", "portz:"),
            "portz",
        ),
        (
            "bad-id.yaml",
            GOOD.replace("{namespace: web}", "{identity: \"spiffe://Bad ID\"}"),
            "identity",
        ),
        ("bad-port.yaml", GOOD.replace("8080", "70000"), "70000"),
        (
            "syntax.yaml",
            GOOD.replace("rules:", "rules: [unclosed"),
            "line",
        ),
        // The first document is fine, the second is not: neither is applied.
        (
            "second-bad.yaml",
            format!("{second}---\n{}", GOOD.replace("8080", "0")),
            "document 2",
        ),
    ];
    for (name, body, detail) in cases {
        let path = file(name, &body);
        let out = cp.ferrule(&["policy", "apply", "-f", &path]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {shown}");
        assert!(
            shown.contains(name) && shown.contains(detail),
            "{name}: the error names the file and the problem ({detail}): {shown}"
        );
        assert_eq!(policy_keys(&cp), ["allow-web"], "{name}: nothing changed");
    }

    // The control plane validates too: a document that bypassed the CLI is refused whole.
    let bad = v1::ApplyPoliciesRequest {
        policies: vec![v1::PolicyDocument {
            json: "{\"apiVersion\": \"nope\"}".into(),
        }],
    };
    let err = cp.admin().apply_policies(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(policy_keys(&cp), ["allow-web"]);

    let out = cp.ferrule(&["policy", "delete", "shop/allow-web"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(policy_keys(&cp).is_empty());
    let out = cp.ferrule(&["policy", "delete", "shop/allow-web"]);
    assert!(
        text(&out).contains("no policy shop/allow-web"),
        "{}",
        text(&out)
    );
}

fn register(uid: &str, sa: &str, ip: &str) -> v1::RegisterWorkloadRequest {
    v1::RegisterWorkloadRequest {
        workload: Some(v1::Workload {
            uid: uid.into(),
            name: uid.into(),
            namespace: "shop".into(),
            service_account: sa.into(),
            ips: vec![ip.into()],
            ..Default::default()
        }),
    }
}

async fn revoked_serials(cp: &ControlPlaneFixture) -> Vec<String> {
    let revocations = cp
        .admin()
        .list_revocations(v1::ListRevocationsRequest {})
        .await
        .unwrap()
        .into_inner()
        .revocations;
    revocations
        .into_iter()
        .filter_map(|r| match r.target {
            Some(v1::revocation::Target::Serial(s)) => Some(s),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn offboarding_the_last_workload_of_an_identity_or_a_node_revokes_its_certificates() {
    use ferrule_proto::v1::workloads_client::WorkloadsClient;
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let node = cp
        .join_node_with_pods(
            "n1",
            &["spiffe://example.org/ns/shop/sa/*"],
            &["10.244.0.0/24"],
        )
        .await;
    let mut workloads = WorkloadsClient::new(cp.channel(Some(node.clone())));
    for (uid, ip) in [("web-a", "10.244.0.10"), ("web-b", "10.244.0.11")] {
        workloads.register(register(uid, "web", ip)).await.unwrap();
    }
    workloads
        .register(register("db-a", "db", "10.244.0.12"))
        .await
        .unwrap();
    let web = sign(&cp, &node, WEB).await.unwrap();
    let db = sign(&cp, &node, "spiffe://example.org/ns/shop/sa/db")
        .await
        .unwrap();

    let unregister = |uid: &str| v1::UnregisterWorkloadRequest { uid: uid.into() };
    workloads.unregister(unregister("web-a")).await.unwrap();
    assert!(
        !revoked_serials(&cp).await.contains(&web.serial),
        "web-b still runs on n1 with the same identity and certificate"
    );
    workloads.unregister(unregister("web-b")).await.unwrap();
    assert!(
        revoked_serials(&cp).await.contains(&web.serial),
        "the last web workload left n1: its certificate is revoked"
    );
    assert!(!revoked_serials(&cp).await.contains(&db.serial));

    let out = cp.ferrule(&["-o", "json", "node", "remove", "n1"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["workloads_removed"], 1, "{report}");
    assert!(revoked_serials(&cp).await.contains(&db.serial), "{report}");
    let listed = cp.ferrule(&["-o", "json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed: Vec<&serde_json::Value> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["node"] == "n1")
        .collect();
    assert!(
        listed.is_empty(),
        "a removed node's record is gone: {status}"
    );
}

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
        .join_node("n1", &["spiffe://example.org/ns/shop/sa/*"])
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
