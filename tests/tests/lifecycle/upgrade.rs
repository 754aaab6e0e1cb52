//! Replacing a running agent: the new one takes over the listeners, the old one drains.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrule_node_agent::capture::inspect;
use ferrule_tests::Child;
use ferrule_tests::mesh::Mesh;

const ECHO_PORT: &str = "9002";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/stream.py")
}

fn python(mesh: &Mesh, node: usize, pod: usize, args: &[&str]) -> Child {
    let mut command = mesh.pod(node, pod).command("python3");
    command.arg("-u").arg(script()).args(args);
    Child::spawn(&mut command)
}

/// These tests time connections under load (1 s budgets, drain deadlines): one at a time, so
/// they do not starve each other on a small machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A strict two-node mesh with an echo server in pod 0 of node 0.
fn mesh_with_echo(agent_env: &[(&str, &str)]) -> (Mesh, Child) {
    let mesh = Mesh::start_with(2, 1, agent_env);
    mesh.enroll_all("strict");
    let server = python(&mesh, 0, 0, &["echo", ECHO_PORT]);
    server.wait_for_line("ready", Duration::from_secs(10));
    (mesh, server)
}

/// Everything on node 1's link to the other nodes, payloads as text.
fn watch_wire(mesh: &Mesh) -> Child {
    let wire = Child::spawn(
        mesh.node(1)
            .command("tcpdump")
            .args(["-l", "-n", "-A", "-i", "eth0", "tcp"]),
    );
    wire.wait_for_line("listening on", Duration::from_secs(10));
    wire
}

fn assert_no_plaintext(mesh: &Mesh, wire: Child) {
    let captured = wire.output();
    drop(wire);
    assert!(
        !captured.contains("marker-") && !captured.contains("alive-"),
        "plaintext left the node:\n{captured}"
    );
    let app_port = format!("{}.{ECHO_PORT}", mesh.pod(0, 0).ip);
    assert!(
        !captured.contains(&app_port),
        "a connection to the app port crossed the link"
    );
}

/// Marker connections from pod 1/0 to the echo server, one after another.
fn markers(mesh: &Mesh, count: usize) -> Child {
    let ip = mesh.pod(0, 0).ip.to_string();
    let load = python(mesh, 1, 0, &["markers", &ip, ECHO_PORT, &count.to_string()]);
    load.wait_for_line("marker-3", Duration::from_secs(20));
    load
}

/// Waits for `n` more successful marker connections.
fn more_markers(load: &Child, n: usize) {
    let target = marker_lines(load).0 + n;
    load.wait_for_count("marker-", "marker-", target, Duration::from_secs(30));
}

fn marker_lines(load: &Child) -> (usize, Vec<String>) {
    let output = load.output();
    let ok = output.lines().filter(|l| l.starts_with("marker-")).count();
    let failed = output
        .lines()
        .filter(|l| l.starts_with("failed") || *l == "empty")
        .map(str::to_owned)
        .collect();
    (ok, failed)
}

fn pins_under(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .flat_map(|e| {
            let path = e.path();
            let mut below = if path.is_dir() {
                walk(&path)
            } else {
                Vec::new()
            };
            below.push(path);
            below
        })
        .collect()
}

/// Node `node`'s row of `ferrule -o json status`.
fn node_status(mesh: &Mesh, node: usize) -> serde_json::Value {
    let out = mesh.ferrule(&["-o", "json", "status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    let name = &mesh.node(node).name;
    status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node"] == name.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn upgrading_both_agents_under_load_fails_no_connection_and_leaks_no_plaintext() {
    let _turn = one_at_a_time();
    let (mut mesh, _server) = mesh_with_echo(&[("FERRULE_DRAIN_TIMEOUT", "5s")]);
    let wire = watch_wire(&mesh);
    let load = markers(&mesh, 100_000);

    // The next program version: the agents start with the built-in one.
    let bumped = [("FERRULE_EBPF_PROGRAM_VERSION", "3")];
    let mut old_client_side = mesh.replace_agent(1, &bumped);
    more_markers(&load, 20);
    let mut old_server_side = mesh.replace_agent(0, &bumped);
    more_markers(&load, 20);

    // The old agents drained what they carried and exited on their own.
    for (node, old) in [(1, &mut old_client_side), (0, &mut old_server_side)] {
        assert_eq!(
            old.wait_exit(Duration::from_secs(20)),
            Some(0),
            "node {node}"
        );
        let log = old.output();
        assert!(
            log.contains("handed over to the new agent; draining"),
            "{log}"
        );
    }
    more_markers(&load, 20);
    let mut load = load;
    load.kill();
    let (ok, failed) = marker_lines(&load);
    let errors: Vec<_> = (0..2)
        .flat_map(|node| mesh.access_log(node))
        .filter(|e| e["close_reason"] != "ok")
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} connections failed during the upgrades: {failed:?}\naccess-log errors: {errors:#?}\nold agents:\n{}\n{}",
        failed.len(),
        ok + failed.len(),
        old_client_side.output(),
        old_server_side.output(),
    );
    assert_no_plaintext(&mesh, wire);

    for node in 0..2 {
        let metrics = mesh.metrics(node);
        assert!(
            metrics.contains(r#"ferrule_agent_info{version="#)
                && metrics.contains(r#"program_version="3",role="serving"} 1"#),
            "node {node} runs program version 3:\n{metrics}"
        );
        let links: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("ferrule_ebpf_links{"))
            .collect();
        assert_eq!(
            links,
            [r#"ferrule_ebpf_links{program_version="3"} 4"#],
            "node {node}: every link of its pod runs version 3"
        );
        assert!(
            !metrics.contains(r#"role="draining"} 1"#),
            "the old agent is gone from node {node}'s metrics:\n{metrics}"
        );
    }
}

/// Echoes every line back until the client closes.
const ECHO_LINES: &str = r#"
import asyncio, sys
async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"#;
const LINES_PORT: &str = "9003";

/// Holds one connection open, echoing `alive-N` every 200 ms; prints `closed` when it ends.
const HOLD: &str = r#"
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
i = 0
while True:
    try:
        conn.sendall(f"alive-{i}\n".encode())
        got = conn.recv(100)
    except OSError:
        got = b""
    if not got:
        print("closed", flush=True)
        break
    print(got.decode().strip(), flush=True)
    i += 1
    time.sleep(0.2)
"#;

/// A line-echo server in pod 0/0 and a connection to it from pod 1/0 that stays open, echoing
/// `alive-N` until it is closed.
fn held_connection(mesh: &Mesh) -> (Child, Child) {
    let mut command = mesh.pod(0, 0).command("python3");
    command.args(["-u", "-c", ECHO_LINES, LINES_PORT]);
    let lines = Child::spawn(&mut command);
    lines.wait_for_line("ready", Duration::from_secs(10));
    let ip = mesh.pod(0, 0).ip.to_string();
    let mut command = mesh.pod(1, 0).command("python3");
    command.args(["-u", "-c", HOLD, &ip, LINES_PORT]);
    let held = Child::spawn(&mut command);
    held.wait_for_line("alive-2", Duration::from_secs(20));
    (lines, held)
}

#[test]
fn a_connection_that_outlives_the_drain_timeout_is_closed_with_reason_drain() {
    let _turn = one_at_a_time();
    let drain = Duration::from_secs(4);
    let (mut mesh, _server) = mesh_with_echo(&[("FERRULE_DRAIN_TIMEOUT", "4s")]);
    let (_lines, held) = held_connection(&mesh);

    let mut old = mesh.replace_agent(1, &[]);
    let handed_over = Instant::now();
    let alive_then = held
        .output()
        .lines()
        .filter(|l| l.starts_with("alive-"))
        .count();
    // Still served through most of the drain period...
    held.wait_for_count(
        "alive-",
        "alive-",
        alive_then + ((drain.as_millis() / 200) as usize * 3 / 4),
        drain,
    );
    assert!(
        !held.output().contains("closed"),
        "closed before the drain timeout"
    );
    // ...then cut, and the old agent exits.
    held.wait_for_line("closed", drain + Duration::from_secs(10));
    let cut_after = handed_over.elapsed();
    assert!(
        cut_after >= drain,
        "cut after {cut_after:?}, before the {drain:?} drain timeout"
    );
    assert_eq!(old.wait_exit(Duration::from_secs(10)), Some(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node_status(&mesh, 1)["draining_predecessor"].is_null() {
        assert!(
            Instant::now() < deadline,
            "the exited agent is still shown draining"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(mesh.metrics(1).contains("ferrule_agent_draining 0"));
    let entry = mesh.wait_for_access(1, Duration::from_secs(5), |e| {
        e["direction"] == "outbound" && e["close_reason"] == "drain"
    });
    assert!(
        entry["duration_ms"].as_u64().unwrap_or(0) >= drain.as_millis() as u64,
        "{entry}"
    );
    assert!(
        mesh.access_log(1)
            .iter()
            .filter(|e| e["close_reason"] == "drain")
            .count()
            == 1,
        "only the held connection was drained: {:?}",
        mesh.access_log(1)
    );
}

#[test]
fn twenty_restarts_under_load_leak_no_plaintext_pins_or_descriptors() {
    let _turn = one_at_a_time();
    let (mut mesh, _server) = mesh_with_echo(&[("FERRULE_DRAIN_TIMEOUT", "3s")]);
    let wire = watch_wire(&mesh);
    let load = markers(&mesh, 100_000);
    let pin_dir = mesh.cp.pin_dir(&mesh.node(1).name.clone());
    let pins = pins_under(&pin_dir);
    let programs: std::collections::BTreeSet<u32> = inspect::pinned_pod_links(&pin_dir)
        .iter()
        .map(|l| l.program)
        .collect();
    // Links in the kernel to this node's programs, pinned or not.
    let links_now = || {
        inspect::loaded_links()
            .iter()
            .filter(|l| programs.contains(&l.program))
            .count()
    };
    let links = links_now();
    assert_eq!(links, 4, "one pod, four programs");
    let mut fds = None;
    for round in 0..20 {
        // Half the restarts overlap (a rolling update), half stop first (a plain restart).
        if round % 2 == 0 {
            let mut old = mesh.replace_agent(1, &[]);
            assert_eq!(
                old.wait_exit(Duration::from_secs(15)),
                Some(0),
                "round {round}"
            );
        } else {
            mesh.terminate_agent(1, Duration::from_secs(15));
            mesh.restart_agent(1);
        }
        more_markers(&load, 3);
        assert_eq!(pins_under(&pin_dir), pins, "round {round}: pins changed");
        assert_eq!(links_now(), links, "round {round}: links changed");
        let now = open_fds(mesh.agent(1).id());
        let first = *fds.get_or_insert(now);
        assert!(
            now <= first + 8,
            "round {round}: the agent holds {now} descriptors, {first} after the first restart"
        );
    }
    drop(load);
    assert_no_plaintext(&mesh, wire);
}

#[test]
fn a_stopped_agent_refuses_new_connections_at_once_and_drains_the_open_ones() {
    let _turn = one_at_a_time();
    let (mut mesh, _server) = mesh_with_echo(&[("FERRULE_DRAIN_TIMEOUT", "3s")]);
    let (_lines, held) = held_connection(&mesh);

    let mut stopping = mesh.signal_agent(1);
    stopping.wait_for_line("stopping without a successor", Duration::from_secs(10));
    // Capture stays, the listeners are closed: refused at once, neither queued nor plaintext.
    let ip = mesh.pod(0, 0).ip.to_string();
    let one = python(&mesh, 1, 0, &["markers", &ip, ECHO_PORT, "1"]);
    let answer = one.wait_for_line("failed", Duration::from_secs(5));
    assert!(answer.contains("ConnectionRefused"), "{answer}");
    // The open connection lives on until the drain timeout, then the agent exits.
    assert!(!held.output().contains("closed"));
    held.wait_for_line("closed", Duration::from_secs(10));
    assert_eq!(stopping.wait_exit(Duration::from_secs(10)), Some(0));
    mesh.wait_for_access(1, Duration::from_secs(5), |e| e["close_reason"] == "drain");
}

#[test]
fn a_successor_that_cannot_adopt_the_pods_leaves_the_running_agent_serving() {
    let _turn = one_at_a_time();
    let (mut mesh, _server) = mesh_with_echo(&[]);
    let load = markers(&mesh, 100_000);
    // Without the control plane the new agent cannot register the pods it would take over.
    mesh.stop_control_plane();
    let config = mesh.agent_config(1);
    let mut command = mesh.node(1).command(ferrule_tests::binary("ferrule-agent"));
    command.arg("--config").arg(&config).env("RUST_LOG", "info");
    let mut successor = Child::spawn(&mut command);
    assert_eq!(
        successor.wait_exit(Duration::from_secs(60)),
        Some(1),
        "{}",
        successor.output()
    );
    assert!(
        successor.output().contains("it keeps serving them"),
        "{}",
        successor.output()
    );
    let running = mesh.agent(1).output();
    assert!(running.contains("serving on"), "{running}");
    assert!(!running.contains("draining"), "{running}");
    more_markers(&load, 20);
    let mut load = load;
    load.kill();
    let (_, failed) = marker_lines(&load);
    assert!(failed.is_empty(), "{failed:?}");
}
