//! Authorization and revocation end to end: policies decide each new connection at the
//! destination, and a policy change or a revocation cuts live connections within a second.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrule_tests::Child;
use ferrule_tests::mesh::{Mesh, TRUST_DOMAIN};

const PORT: u16 = 8080;
const OTHER_PORT: u16 = 8081;
/// Pushing to every agent and closing must take less than this.
const CUT_WITHIN: f64 = 1.0;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/stream.py")
}

fn sa(node: usize, pod: usize) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/pod-{node}-{pod}")
}

/// A line-echo server in pod `(node, pod)` on `port`.
fn chat_server(mesh: &Mesh, node: usize, pod: usize, port: u16) -> Child {
    let child = Child::spawn(
        mesh.pod(node, pod)
            .command("python3")
            .arg("-u")
            .arg(script())
            .args(["chat", &port.to_string()]),
    );
    child.wait_for_line("ready", Duration::from_secs(10));
    child
}

/// One request from pod `(node, pod)`: `Ok` if echoed, `Err(why)` if refused.
fn once(mesh: &Mesh, node: usize, pod: usize, to: (usize, usize), port: u16) -> Result<(), String> {
    let ip = mesh.pod(to.0, to.1).ip.to_string();
    let out = mesh
        .pod(node, pod)
        .command("python3")
        .arg(script())
        .args(["once", &ip, &port.to_string()])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if text == "ok" { Ok(()) } else { Err(text) }
}

/// A connection from pod `(node, pod)` kept busy until it is cut.
fn hold(mesh: &Mesh, node: usize, pod: usize, to: (usize, usize), port: u16) -> Child {
    let ip = mesh.pod(to.0, to.1).ip.to_string();
    let child = Child::spawn(
        mesh.pod(node, pod)
            .command("python3")
            .arg("-u")
            .arg(script())
            .args(["hold", &ip, &port.to_string()]),
    );
    child.wait_for_line("open", Duration::from_secs(10));
    child
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Seconds from `since` until the held connection reported its end.
fn closed_after(held: &Child, since: f64) -> f64 {
    let line = held.wait_for_line("closed", Duration::from_secs(5));
    let at: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    at - since
}

fn policy_doc(name: &str, action: &str, selector_sa: &str, rule: &str) -> String {
    format!(
        "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  action: {action}\n  selector:\n    serviceAccount: {selector_sa}\n  rules:\n{rule}"
    )
}

/// `ferrule policy apply -f` with `documents`; returns the configuration version.
fn apply(mesh: &Mesh, documents: &[String]) -> u64 {
    let file = mesh.work.path().join(format!("policy-{}.yaml", now()));
    std::fs::write(&file, documents.join("---\n")).unwrap();
    let out = mesh.ferrule(&[
        "-o",
        "json",
        "policy",
        "apply",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "policy apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["version"].as_u64().expect("version")
}

#[test]
fn policies_decide_each_new_connection_at_the_destination() {
    let mesh = Mesh::start(2, 2);
    mesh.enroll_all("strict");
    let _servers = [
        chat_server(&mesh, 0, 0, PORT),
        chat_server(&mesh, 0, 0, OTHER_PORT),
    ];
    let server = (0, 0);
    // Before any policy selects the server, every mesh identity is allowed.
    once(&mesh, 1, 1, server, PORT).expect("no policy: allowed");

    let version = apply(
        &mesh,
        &[
            policy_doc(
                "allow-shop",
                "ALLOW",
                "pod-0-0",
                &format!("    - from: [{{namespace: shop}}]\n      ports: [{PORT}]\n"),
            ),
            policy_doc(
                "deny-pod-1-1",
                "DENY",
                "pod-0-0",
                &format!("    - from: [{{identity: \"{}\"}}]\n", sa(1, 1)),
            ),
            policy_doc(
                "audit-pod-0-1",
                "AUDIT",
                "pod-0-0",
                &format!("    - from: [{{identity: \"{}\"}}]\n", sa(0, 1)),
            ),
        ],
    );
    mesh.wait_for_version(version, Duration::from_secs(5));

    once(&mesh, 1, 0, server, PORT).expect("the shop namespace is allowed on 8080");
    let refused = once(&mesh, 1, 1, server, PORT).expect_err("DENY wins over the namespace ALLOW");
    let log = mesh
        .agent(0)
        .wait_for_line("deny-pod-1-1", Duration::from_secs(5));
    assert!(
        log.contains("HBONE CONNECT refused") && log.contains(&sa(1, 1)),
        "the destination logs the denial with the source and the rule: {log}\n(client saw {refused})"
    );
    once(&mesh, 0, 1, server, PORT).expect("AUDIT lets the connection through");
    let audit = mesh
        .agent(0)
        .wait_for_line("audit:", Duration::from_secs(5));
    assert!(
        audit.contains(&sa(0, 1)) && audit.contains("audit-pod-0-1"),
        "{audit}"
    );
    once(&mesh, 1, 0, server, OTHER_PORT).expect_err("no rule allows 8081: default deny");
    mesh.agent(0)
        .wait_for_line("default deny", Duration::from_secs(5));

    let out = mesh.ferrule(&[
        "explain",
        &sa(1, 1),
        &format!("{}:{PORT}", mesh.pod(0, 0).ip),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("deny") && text.contains("shop/deny-pod-1-1#0"),
        "explain names the decision and the rule:\n{text}"
    );
}

/// Issue 12 finding 8e: a DENY policy turned on default deny for the workloads it selected, so
/// blocking one caller cut off every other one. Now only ALLOW policies and an explicit
/// `defaultAction: deny` do.
#[test]
fn a_deny_blocks_only_its_caller_and_default_action_deny_blocks_the_unlisted() {
    let mesh = Mesh::start(2, 2);
    mesh.enroll_all("strict");
    let _server = chat_server(&mesh, 0, 0, PORT);
    let server = (0, 0);
    let deny = policy_doc(
        "deny-pod-1-1",
        "DENY",
        "pod-0-0",
        &format!("    - from: [{{identity: \"{}\"}}]\n", sa(1, 1)),
    );
    let version = apply(&mesh, std::slice::from_ref(&deny));
    mesh.wait_for_version(version, Duration::from_secs(5));
    once(&mesh, 1, 1, server, PORT).expect_err("the DENY names pod-1-1");
    once(&mesh, 1, 0, server, PORT).expect("a DENY for pod-1-1 leaves pod-1-0 alone");
    once(&mesh, 0, 1, server, PORT).expect("a DENY for pod-1-1 leaves pod-0-1 alone");

    let zero_trust = "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  \
                      name: zero-trust\n  namespace: shop\nspec:\n  defaultAction: deny\n";
    let version = apply(&mesh, &[zero_trust.to_owned()]);
    mesh.wait_for_version(version, Duration::from_secs(5));
    let refused = once(&mesh, 0, 1, server, PORT).expect_err("the namespace is zero trust");
    let log = mesh.agent(0).wait_for_line(
        "default action deny of namespace shop",
        Duration::from_secs(5),
    );
    assert!(
        log.contains(&sa(0, 1)) && log.contains("shop/zero-trust"),
        "the destination logs the source and the default's document: {log}\n(client saw {refused})"
    );
    let out = mesh.ferrule(&[
        "explain",
        &sa(0, 1),
        &format!("{}:{PORT}", mesh.pod(0, 0).ip),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains(
                "deny (default action deny of namespace shop, set by policy shop/zero-trust)"
            )
            && text.contains("shop/zero-trust#default"),
        "explain names the default as the cause:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let allow = policy_doc(
        "allow-pod-1-0",
        "ALLOW",
        "pod-0-0",
        &format!("    - from: [{{identity: \"{}\"}}]\n", sa(1, 0)),
    );
    let version = apply(&mesh, &[allow]);
    mesh.wait_for_version(version, Duration::from_secs(5));
    once(&mesh, 1, 0, server, PORT).expect("an ALLOW admits its caller in a zero-trust namespace");
    once(&mesh, 0, 1, server, PORT).expect_err("the unlisted caller stays refused");
}

#[test]
fn a_policy_change_or_a_revocation_cuts_live_connections_within_a_second() {
    let mut mesh = Mesh::start(2, 2);
    mesh.enroll_all("strict");
    let _server = chat_server(&mesh, 0, 0, PORT);
    let server = (0, 0);
    let by_policy = hold(&mesh, 1, 0, server, PORT);
    let by_revocation = hold(&mesh, 1, 1, server, PORT);

    // One file: shop may connect, except pod-1-0. Only pod-1-0's live connection is cut.
    let started = now();
    apply(
        &mesh,
        &[
            policy_doc(
                "allow-shop",
                "ALLOW",
                "pod-0-0",
                "    - from: [{namespace: shop}]\n",
            ),
            policy_doc(
                "deny-pod-1-0",
                "DENY",
                "pod-0-0",
                &format!("    - from: [{{identity: \"{}\"}}]\n", sa(1, 0)),
            ),
        ],
    );
    let took = closed_after(&by_policy, started);
    assert!(
        took < CUT_WITHIN,
        "the denied connection closed {took:.3}s after the policy change"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !by_revocation.output().contains("closed"),
        "an allowed connection stays open: {}",
        by_revocation.output()
    );
    once(&mesh, 1, 1, server, PORT).expect("pod-1-1 is allowed");
    once(&mesh, 1, 0, server, PORT).expect_err("pod-1-0 is denied for new connections too");

    let started = now();
    let out = mesh.ferrule(&["revoke", "--identity", &sa(1, 1), "--reason", "test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = closed_after(&by_revocation, started);
    assert!(
        took < CUT_WITHIN,
        "the revoked identity's connection closed {took:.3}s after the revocation"
    );
    once(&mesh, 1, 1, server, PORT).expect_err("a new connection with the revoked certificate");
    mesh.agent(0)
        .wait_for_line("reason=\"revoked\"", Duration::from_secs(5));
    // The revoked identity gets no new certificate until lifted.
    let out = mesh.ferrule(&["revoke", "--identity", &sa(1, 1), "--lift"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(mesh.stop_agent(1));
}

/// The serials of `id`'s certificates in the control plane's inventory.
fn serials_of(mesh: &Mesh, id: &str) -> Vec<String> {
    let out = mesh.ferrule(&["-o", "json", "certs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let certs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    certs
        .iter()
        .filter(|c| c["spiffe_id"] == id)
        .map(|c| c["serial"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn revoking_the_destinations_certificate_cuts_the_pooled_tunnel_to_it() {
    let mut mesh = Mesh::start(2, 1);
    mesh.enroll_all("strict");
    let _server = chat_server(&mesh, 0, 0, PORT);
    let held = hold(&mesh, 1, 0, (0, 0), PORT);
    let serials = serials_of(&mesh, &sa(0, 0));
    assert_eq!(serials.len(), 1, "{serials:?}");

    // Only the server's certificate: the client's side is the one that must notice.
    let started = now();
    let out = mesh.ferrule(&["revoke", "--serial", &serials[0], "--reason", "test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = closed_after(&held, started);
    assert!(
        took < CUT_WITHIN,
        "the tunnel to the revoked certificate closed {took:.3}s after the revocation"
    );
    mesh.agent(1)
        .wait_for_line("closing outbound HBONE tunnel", Duration::from_secs(5));
    // The destination renews at once; new connections use its new certificate.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while once(&mesh, 1, 0, (0, 0), PORT).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no new connection after the renewal"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(mesh.stop_agent(1));
}

#[test]
fn agents_keep_enforcing_without_the_control_plane_and_resume_with_a_delta() {
    let mut mesh = Mesh::start(2, 1);
    mesh.enroll_all("strict");
    let _servers = [
        chat_server(&mesh, 0, 0, PORT),
        chat_server(&mesh, 0, 0, OTHER_PORT),
    ];
    let server = (0, 0);
    let allow_port = |ports: &str| {
        policy_doc(
            "allow-client",
            "ALLOW",
            "pod-0-0",
            &format!(
                "    - from: [{{identity: \"{}\"}}]\n      ports: [{ports}]\n",
                sa(1, 0)
            ),
        )
    };
    let version = apply(&mesh, &[allow_port(&PORT.to_string())]);
    mesh.wait_for_version(version, Duration::from_secs(5));
    let before = mesh.config_status(0);
    assert_eq!(before["snapshots"], 1, "{before}");

    mesh.stop_control_plane();
    once(&mesh, 1, 0, server, PORT).expect("still allowed without the control plane");
    once(&mesh, 1, 0, server, OTHER_PORT).expect_err("still denied without the control plane");

    mesh.start_control_plane();
    let version = apply(&mesh, &[allow_port(&format!("{PORT}, {OTHER_PORT}"))]);
    mesh.wait_for_version(version, Duration::from_secs(10));
    once(&mesh, 1, 0, server, OTHER_PORT).expect("the new version allows 8081");
    for node in 0..2 {
        let after = mesh.config_status(node);
        assert_eq!(
            after["snapshots"], 1,
            "node {node} resumed without a full download: {after}"
        );
        assert!(after["deltas"].as_u64().unwrap() >= 1, "{after}");
    }
    let out = mesh.ferrule(&["-o", "json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for agent in status["nodes"].as_array().unwrap() {
        assert_eq!(agent["snapshots_sent"], 0, "{status}");
        assert_eq!(agent["applied_version"], version, "{status}");
    }
}
