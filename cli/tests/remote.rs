//! Commands that talk to the control plane: against a fake Admin service over the mesh's real
//! TLS settings, and against endpoints that fail in the ways operators meet.

#[path = "support/common.rs"]
mod common;
#[path = "support/fake_cp.rs"]
mod fake_cp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{Run, init_ca, run, run_async};
use fake_cp::{FakeAdmin, bundle_of, control_plane_cert, serve};
use ferrule_identity::{SpiffeId, TrustDomain};
use serde_json::Value;

struct Mesh {
    _tmp: tempfile::TempDir,
    ca: PathBuf,
    addr: SocketAddr,
    admin: FakeAdmin,
}

/// A CA and a fake control plane that presents the right identity and trusts that CA.
async fn mesh() -> Mesh {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "example.org");
    let admin = FakeAdmin::default();
    let addr = serve(control_plane_cert(&ca), bundle_of(&ca), admin.clone()).await;
    Mesh {
        _tmp: tmp,
        ca,
        addr,
        admin,
    }
}

impl Mesh {
    async fn ferrule(&self, args: &[&str]) -> Run {
        ferrule_at(&self.ca, self.addr, args).await
    }
}

async fn ferrule_at(ca: &Path, addr: SocketAddr, args: &[&str]) -> Run {
    let addr = addr.to_string();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--ca-dir", ca.to_str().unwrap(), "--control-plane", &addr]);
    run_async(&full).await
}

#[test]
fn unreachable_control_plane_is_named_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "example.org");
    let out = run(&[
        "node",
        "token",
        "create",
        "--node",
        "n1",
        "--allow",
        "spiffe://example.org/ns/shop/sa/*",
        "--ca-dir",
        ca.to_str().unwrap(),
        "--control-plane",
        "127.0.0.1:1",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("cannot reach the control plane at 127.0.0.1:1: connection refused")
            && out.stderr.contains("--control-plane"),
        "stderr: {}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for scripts: {out:#?}"
    );
}

#[test]
fn missing_admin_files_say_which_flags_to_use() {
    let out = run(&["node", "list"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("--ca-dir") && out.stderr.contains("FERRULE_CA_DIR"),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_create_prints_only_the_token_and_sends_the_request() {
    let mesh = mesh().await;
    let out = mesh
        .ferrule(&[
            "node",
            "token",
            "create",
            "--node",
            "n1",
            "--allow",
            "spiffe://example.org/ns/shop/sa/*",
            "--allow",
            "spiffe://example.org/ns/web/sa/*",
            "--pod-cidr",
            "10.244.1.0/24",
            "--pod-cidr",
            "fd00:10:244:1::/64",
            "--ttl",
            "1h 30m",
        ])
        .await
        .success();
    assert_eq!(out.stdout, "fjt_0123456789abcdef\n");
    assert!(
        // A second may pass between the server stamping the expiry and the CLI printing it.
        out.stderr.contains("node n1")
            && (out.stderr.contains("in 1h 30m") || out.stderr.contains("in 1h 29m")),
        "stderr: {}",
        out.stderr
    );
    let seen = mesh.admin.seen.lock().unwrap();
    assert_eq!(seen.callers, ["spiffe://example.org/ferrule/admin/admin"]);
    let request = &seen.token_requests[0];
    assert_eq!(request.node, "n1");
    assert_eq!(
        request.allow,
        [
            "spiffe://example.org/ns/shop/sa/*",
            "spiffe://example.org/ns/web/sa/*"
        ]
    );
    assert_eq!(request.pod_cidrs, ["10.244.1.0/24", "fd00:10:244:1::/64"]);
    assert_eq!(request.ttl_seconds, 5400);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_create_refuses_a_pod_cidr_with_host_bits_before_calling() {
    let mesh = mesh().await;
    let args = ["node", "token", "create", "--node", "n1", "--pod-cidr"];
    let out = mesh
        .ferrule(&[&args[..], &["10.244.1.7/24"]].concat())
        .await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("did you mean 10.244.1.0/24?"),
        "{}",
        out.stderr
    );
    let out = mesh.ferrule(&[&args[..], &["10.244.1"]].concat()).await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(mesh.admin.seen.lock().unwrap().token_requests.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn token_create_json() {
    let mesh = mesh().await;
    let out = mesh
        .ferrule(&["-o", "json", "node", "token", "create", "--node", "n1"])
        .await
        .success();
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["token"], "fjt_0123456789abcdef");
    assert_eq!(v["node"], "n1");
    let expires = v["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 20, "{expires}");
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_refusal_is_shown_with_its_reason() {
    let mesh = mesh().await;
    let out = mesh
        .ferrule(&["node", "token", "create", "--node", "n1", "--ttl", "2days"])
        .await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("the control plane rejected the request: ttl 172800s exceeds the maximum"),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_list_table_and_json() {
    let mesh = mesh().await;
    let out = mesh.ferrule(&["node", "list"]).await.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].starts_with("NAME  SPIFFE ID"), "{}", lines[0]);
    assert!(lines[0].ends_with("JOINED"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("n1    spiffe://example.org/node/n1")
            && lines[1].contains("10.244.1.0/24")
            && lines[1]
                .contains("spiffe://example.org/ns/shop/sa/*,spiffe://example.org/ns/web/sa/*")
            && lines[1].ends_with("2023-11-14T22:13:20Z"),
        "sorted by name, patterns joined: {}",
        out.stdout
    );

    let out = mesh
        .ferrule(&["-o", "json", "node", "list"])
        .await
        .success();
    let nodes: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON array");
    assert_eq!(nodes[0]["name"], "n1");
    assert_eq!(nodes[0]["allow"].as_array().unwrap().len(), 2);
    assert_eq!(nodes[0]["pod_cidrs"][0], "10.244.1.0/24");
    assert_eq!(nodes[1]["joined_at"], "2023-11-14T22:15:00Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn certs_are_sorted_by_expiry_and_flagged() {
    let mesh = mesh().await;
    let out = mesh.ferrule(&["certs"]).await.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert!(lines[0].starts_with("SERIAL") && lines[0].ends_with("STATUS"));
    let summary: Vec<(&str, &str)> = lines[1..]
        .iter()
        .map(|l| {
            (
                l.split_whitespace().next().unwrap(),
                l.split_whitespace().last().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("0b", "EXPIRED"),
            ("0c", "EXPIRING"),
            ("0a", "OK"),
            ("0d", "REVOKED")
        ],
        "{}",
        out.stdout
    );

    let out = mesh
        .ferrule(&["-o", "json", "certs", "--node", "n1"])
        .await
        .success();
    let certs: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON array");
    let statuses: Vec<&str> = certs
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["EXPIRING", "OK"]);
    let remaining = certs[0]["remaining_seconds"].as_i64().unwrap();
    assert!((3000..3600).contains(&remaining), "{remaining}");
    assert_eq!(
        mesh.admin.seen.lock().unwrap().certificate_filters,
        ["", "n1"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_table_and_json() {
    let mesh = mesh().await;
    let out = mesh.ferrule(&["status"]).await.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].ends_with(": configuration version 7 (epoch e1)"),
        "{}",
        out.stdout
    );
    assert_eq!(
        lines[1..],
        [
            "2 node(s), 1 agent(s) connected, 0 behind",
            "NODE  AGENT         VERSION        STATE                                     APPLIED  LAG  LAST ACK  NACK",
            "n1    connected     0.2.0 eBPF v2  serving; previous 0.1.0 eBPF v1 draining  7        0    -         -",
            "n2    disconnected  -              -                                         7        0    -         -",
        ],
        "{}",
        out.stdout
    );

    let out = mesh.ferrule(&["-o", "json", "status"]).await.success();
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["version"], 7);
    assert_eq!(v["nodes"][1]["node"], "n2");
    assert_eq!(v["nodes"][1]["agent"], "disconnected");
    assert_eq!(v["nodes"][1]["last_ack"], Value::Null);
    let n1 = &v["nodes"][0];
    assert_eq!(
        (
            &n1["agent_version"],
            &n1["program_version"],
            &n1["draining"]
        ),
        (&Value::from("0.2.0"), &Value::from(2), &Value::from(false))
    );
    assert_eq!(n1["draining_predecessor"]["program_version"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_selects_control_plane_and_ca_dir() {
    let mesh = mesh().await;
    let mut cmd = common::ferrule(&["node", "list"]);
    cmd.env("FERRULE_CONTROL_PLANE", mesh.addr.to_string())
        .env("FERRULE_CA_DIR", &mesh.ca);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_with_the_wrong_identity_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "example.org");
    let td = TrustDomain::new("example.org").unwrap();
    let impostor = fake_cp::issue(&ca, &SpiffeId::node(&td, "n1").unwrap());
    let addr = serve(impostor, bundle_of(&ca), FakeAdmin::default()).await;
    let out = ferrule_at(&ca, addr, &["node", "list"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("TLS handshake")
            && out.stderr.contains(
                "peer presented spiffe://example.org/node/n1, expected \
                 spiffe://example.org/ferrule/control-plane"
            ),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_that_does_not_trust_our_ca_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = init_ca(&tmp.path().join("ours"), "example.org");
    let theirs = init_ca(&tmp.path().join("theirs"), "example.org");
    // Presents a certificate we accept, but only accepts clients of another CA.
    let addr = serve(
        control_plane_cert(&ours),
        bundle_of(&theirs),
        FakeAdmin::default(),
    )
    .await;
    let out = ferrule_at(&ours, addr, &["certs"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("rejected the admin certificate"),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_service_on_the_port_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "example.org");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let out = ferrule_at(&ca, addr, &["node", "list"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("TLS handshake") && out.stderr.contains(&addr.to_string()),
        "stderr: {}",
        out.stderr
    );
}
