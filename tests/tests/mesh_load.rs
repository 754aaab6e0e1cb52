//! The data path under load: a 1 GiB transfer intact, 1,000 concurrent connections with bounded
//! agent memory, and an agent restart that never lets plaintext out.

use std::path::PathBuf;
use std::time::Duration;

use ferrule_tests::Child;
use ferrule_tests::mesh::Mesh;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/stream.py")
}

fn python(mesh: &Mesh, node: usize, pod: usize, args: &[&str]) -> std::process::Command {
    let mut command = mesh.pod(node, pod).command("python3");
    command.arg("-u").arg(script()).args(args);
    command
}

#[test]
fn one_gib_crosses_nodes_intact() {
    let mesh = Mesh::start(2, 1);
    mesh.enroll_all("strict");
    let gib = (1u64 << 30).to_string();
    let server = Child::spawn(&mut python(&mesh, 0, 0, &["serve", "9000", &gib]));
    server.wait_for_line("ready", Duration::from_secs(10));
    let ip = mesh.pod(0, 0).ip.to_string();
    let out = python(&mesh, 1, 0, &["fetch", &ip, "9000"])
        .output()
        .unwrap();
    let received = String::from_utf8_lossy(&out.stdout);
    let sent = server.wait_for_line("sent", Duration::from_secs(30));
    let hash = |line: &str| line.split_whitespace().nth(2).map(str::to_owned);
    assert!(received.contains(&format!("received {gib} ")), "{received}");
    assert_eq!(
        hash(received.trim()),
        hash(&sent),
        "sha256 of what arrived vs what was sent"
    );
}

#[test]
fn a_thousand_concurrent_connections_with_bounded_agent_memory() {
    let mesh = Mesh::start(2, 1);
    mesh.enroll_all("strict");
    let server = Child::spawn(&mut python(&mesh, 0, 0, &["echo", "9001"]));
    server.wait_for_line("ready", Duration::from_secs(10));
    let ip = mesh.pod(0, 0).ip.to_string();
    let idle_rss = mesh.agent(1).rss_kib();
    // Hold 1,000 connections open for 2 s, then echo a line on each.
    let client = Child::spawn(&mut python(
        &mesh,
        1,
        0,
        &["many", &ip, "9001", "1000", "2"],
    ));
    client.wait_for_line("open 1000", Duration::from_secs(60));
    let busy_rss = mesh.agent(1).rss_kib();
    let done = client.wait_for_line("echoed", Duration::from_secs(60));
    assert_eq!(done.trim(), "echoed 1000", "every connection echoed");
    let per_connection = busy_rss.saturating_sub(idle_rss) * 1024 / 1000;
    println!(
        "agent RSS idle {idle_rss} KiB, with 1,000 open connections {busy_rss} KiB ({per_connection} B each)"
    );
    assert!(
        busy_rss < idle_rss + 64 * 1024,
        "agent memory stays bounded: {idle_rss} KiB idle, {busy_rss} KiB with 1,000 connections"
    );
}

#[test]
fn agent_restart_under_load_fails_closed_and_recovers() {
    let mut mesh = Mesh::start(2, 1);
    mesh.enroll_all("strict");
    let server = Child::spawn(&mut python(&mesh, 0, 0, &["echo", "9002"]));
    server.wait_for_line("ready", Duration::from_secs(10));
    let ip = mesh.pod(0, 0).ip;

    // Everything that leaves node-1 toward node-0, payloads as text.
    let wire = Child::spawn(
        mesh.node(1)
            .command("tcpdump")
            .args(["-l", "-n", "-A", "-i", "eth0", "tcp"]),
    );
    wire.wait_for_line("listening on", Duration::from_secs(10));
    // A client that keeps making connections through the restart.
    let ip_text = ip.to_string();
    let load = Child::spawn(&mut python(
        &mesh,
        1,
        0,
        &["markers", &ip_text, "9002", "400"],
    ));
    load.wait_for_line("marker-5", Duration::from_secs(20));

    let old = mesh.stop_agent(1).unwrap_or_default();
    assert!(old.contains("pod enrolled"), "{old}");
    std::thread::sleep(Duration::from_millis(500));
    let restarted = mesh.restart_agent(1);
    restarted.wait_for_line("adopted the pinned programs", Duration::from_secs(10));
    restarted.wait_for_line("re-enrolled after restart", Duration::from_secs(20));
    let before = load
        .output()
        .lines()
        .filter(|l| l.starts_with("marker-"))
        .count();
    // New connections work again after the restart.
    let recovered = load.wait_for_count("marker-", "marker-", before + 5, Duration::from_secs(30));
    assert!(recovered.starts_with("marker-"), "{recovered}");
    let failures = load
        .output()
        .lines()
        .filter(|l| l.starts_with("failed") || *l == "empty")
        .count();
    assert!(
        failures > 0,
        "connections during the gap should fail closed:\n{}",
        load.output()
    );

    drop(load);
    let captured = wire.output();
    drop(wire);
    assert!(
        !captured.contains("marker-"),
        "plaintext left the node during the restart:\n{captured}"
    );
    assert!(
        !captured.contains(&format!("{ip}.9002")),
        "a connection to the app port crossed the link"
    );
}
