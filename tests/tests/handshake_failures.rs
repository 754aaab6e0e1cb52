//! Every handshake-failure reason, produced with a crafted certificate or client against a real
//! agent: each shows up under its own metric label, in the agent's log, and in `ferrule explain`
//! for the two workloads involved.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use ferrule_identity::SpiffeId;
use ferrule_identity::testing::TestCa;
use ferrule_tests::Child;
use ferrule_tests::cluster::Pod;
use ferrule_tests::mesh::{Mesh, TRUST_DOMAIN};

const HOUR: Duration = Duration::from_secs(3600);

/// A command in `pod`'s network namespace but not its cgroup: it is not captured by eBPF, so it
/// talks to the HBONE port directly, like a foreign client or server would.
fn in_netns(pod: &Pod, program: &str) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={}", pod.netns.display()))
        .arg(program);
    command
}

/// `openssl s_client` from `from` to `to`'s HBONE port with extra arguments.
fn s_client(from: &Pod, to: &Pod, args: &[&str]) -> Output {
    in_netns(from, "openssl")
        .args([
            "s_client",
            "-connect",
            &format!("{}:15008", to.ip),
            "-alpn",
            "h2",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl")
}

struct Crafted {
    /// The leaf, then its issuers (openssl sends only the leaf of `-cert`; `-cert_chain` the rest).
    cert: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

fn write_pem(dir: &Path, name: &str, (chain, key): (String, String)) -> Crafted {
    let blocks: Vec<String> = chain
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
        .map(|b| format!("{}\n", b.trim()))
        .collect();
    let cert = dir.join(format!("{name}.crt"));
    let chain_path = dir.join(format!("{name}-chain.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &blocks[0]).unwrap();
    std::fs::write(&chain_path, blocks[1..].concat()).unwrap();
    std::fs::write(&key_path, key).unwrap();
    Crafted {
        cert,
        chain: chain_path,
        key: key_path,
    }
}

fn with_cert(c: &Crafted) -> [&str; 6] {
    [
        "-cert",
        c.cert.to_str().unwrap(),
        "-cert_chain",
        c.chain.to_str().unwrap(),
        "-key",
        c.key.to_str().unwrap(),
    ]
}

fn sa(name: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/{name}")).unwrap()
}

#[test]
fn every_handshake_failure_reason_has_its_own_label_and_shows_in_explain() {
    let mut mesh = Mesh::start(2, 2);
    mesh.enroll_all("strict");
    let dir = mesh.work.path().to_owned();
    let (source, target) = (mesh.pod(1, 0).clone(), mesh.pod(0, 0).clone());
    let ours = TestCa::load(&mesh.cp.layout, mesh.cp.trust_domain.clone());
    let now = SystemTime::now();
    let id = sa("pod-1-0");
    let expired = write_pem(
        &dir,
        "expired",
        ours.issue_with_validity(&id, now - 2 * HOUR, now - HOUR)
            .unwrap(),
    );
    let future = write_pem(
        &dir,
        "future",
        ours.issue_with_validity(&id, now + HOUR, now + 2 * HOUR)
            .unwrap(),
    );
    let other_td = SpiffeId::parse("spiffe://other.org/ns/shop/sa/pod-1-0").unwrap();
    let foreign_td = write_pem(
        &dir,
        "other-td",
        ours.issue_with_validity(&other_td, now - HOUR, now + HOUR)
            .unwrap(),
    );
    let revoked = write_pem(
        &dir,
        "revoked",
        ours.issue_with_validity(&sa("revoked-one"), now - HOUR, now + HOUR)
            .unwrap(),
    );
    let out = mesh.ferrule(&["revoke", "--identity", sa("revoked-one").as_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other_ca = TestCa::new(TRUST_DOMAIN);
    let unknown = write_pem(
        &dir,
        "unknown-ca",
        other_ca
            .ca
            .issue_with_validity(&id, now - HOUR, now + HOUR)
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500)); // the revocation reaches the agents

    let cases: [(&str, Vec<&str>); 7] = [
        ("no_client_certificate", vec!["-tls1_3"]),
        ("protocol_version", vec!["-tls1_2"]),
        ("unknown_ca", with_cert(&unknown).to_vec()),
        ("expired", with_cert(&expired).to_vec()),
        ("not_yet_valid", with_cert(&future).to_vec()),
        ("wrong_trust_domain", with_cert(&foreign_td).to_vec()),
        ("revoked", with_cert(&revoked).to_vec()),
    ];
    for (reason, args) in &cases {
        let out = s_client(&source, &target, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("Could not read"),
            "{reason}: s_client: {stderr}"
        );
        let log = mesh
            .agent(0)
            .wait_for_line(&format!("reason=\"{reason}\""), Duration::from_secs(5));
        assert!(
            log.contains("HBONE TLS handshake refused"),
            "{reason}: {log}\n{stderr}"
        );
    }
    // Garbage on the port: not TLS at all.
    let garbage = format!("echo 'GET / HTTP/1.0' > /dev/tcp/{}/15008", target.ip);
    let _ = in_netns(&source, "bash").args(["-c", &garbage]).output();

    // A server that presents another identity than the directory says (client side).
    let impostor_target = mesh.pod(1, 1).clone();
    drop(mesh.stop_agent(1)); // frees pod-1-1's HBONE port; its directory entry stays
    let impostor = write_pem(
        &dir,
        "impostor",
        ours.issue_with_validity(&sa("impostor"), now - HOUR, now + HOUR)
            .unwrap(),
    );
    let server = Child::spawn(
        in_netns(&impostor_target, "openssl")
            .args([
                "s_server", "-accept", "15008", "-tls1_3", "-alpn", "h2", "-www",
            ])
            .args(with_cert(&impostor)),
    );
    server.wait_for_line("ACCEPT", Duration::from_secs(10));
    let client = mesh.pod(0, 1);
    let _ = client
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://{}:8080/", impostor_target.ip),
        ])
        .output();

    let metrics = mesh.metrics(0);
    for reason in cases.iter().map(|(r, _)| *r).chain(["other"]) {
        let series =
            format!("ferrule_handshake_failures_total{{side=\"server\",reason=\"{reason}\"}}");
        assert!(metrics.contains(&series), "missing {series} in:\n{metrics}");
    }
    let series = "ferrule_handshake_failures_total{side=\"client\",reason=\"wrong_spiffe_id\"}";
    assert!(
        metrics.contains(series),
        "missing {series}\nagent 0:\n{}\ns_server:\n{}",
        mesh.agent(0).output(),
        server.output()
    );

    // The control plane heard of them (agents report once a second) and explain shows them.
    std::thread::sleep(Duration::from_millis(1500));
    let explain = |src: &str, dst: &str| {
        let out = mesh.ferrule(&["-o", "json", "explain", src, dst]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["handshake_failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["reason"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let seen = explain(
        &format!("shop/{}", source.name),
        &format!("{}:8080", target.ip),
    );
    for (reason, _) in &cases {
        assert!(
            seen.iter().any(|r| r == reason),
            "explain lacks {reason}: {seen:?}"
        );
    }
    let seen = explain(
        &format!("shop/{}", client.name),
        &format!("{}:8080", impostor_target.ip),
    );
    assert!(seen.iter().any(|r| r == "wrong_spiffe_id"), "{seen:?}");
    let table = mesh.ferrule(&[
        "explain",
        &format!("shop/{}", client.name),
        &format!("{}:8080", impostor_target.ip),
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("wrong_spiffe_id") && text.contains("impostor"),
        "{text}"
    );
}

/// Only workloads open HBONE tunnels: a node's or an administrator's certificate, valid and
/// from the mesh's own CA, is refused at the handshake with `not_workload`, in the log with the
/// identity and in the metric.
#[test]
fn node_and_admin_certificates_cannot_open_hbone_tunnels() {
    let mesh = Mesh::start(1, 2);
    mesh.enroll_all("strict");
    let dir = mesh.work.path().to_owned();
    let (source, target) = (mesh.pod(0, 1).clone(), mesh.pod(0, 0).clone());
    let td = mesh.cp.trust_domain.clone();
    let ours = TestCa::load(&mesh.cp.layout, td.clone());
    let now = SystemTime::now();
    let ids = [
        ("node", SpiffeId::node(&td, "node-0").unwrap()),
        ("admin", SpiffeId::admin(&td, "ops").unwrap()),
    ];
    for (name, id) in &ids {
        let cert = ours.issue_with_validity(id, now - HOUR, now + HOUR);
        let crafted = write_pem(&dir, name, cert.unwrap());
        let out = s_client(&source, &target, &with_cert(&crafted));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("Could not read"),
            "{name}: s_client: {stderr}"
        );
        let log = mesh.agent(0).wait_for_line(
            &format!("{id} is not a workload identity"),
            Duration::from_secs(5),
        );
        assert!(
            log.contains("HBONE TLS handshake refused") && log.contains("reason=\"not_workload\""),
            "{name}: {log}"
        );
    }
    let metrics = mesh.metrics(0);
    let series = "ferrule_handshake_failures_total{side=\"server\",reason=\"not_workload\"} 2";
    assert!(metrics.contains(series), "missing {series} in:\n{metrics}");
}
