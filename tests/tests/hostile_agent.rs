//! Hostile clients against real agents: half-open TLS handshakes and HTTP/2 reset attacks on a
//! pod's HBONE port, and a pod opening 20,000 connections. Each is cut by its limit, counted in
//! `ferrule_limit_hits_total`, and well-behaved clients keep being served.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ferrule_identity::testing::TestCa;
use ferrule_identity::{SharedBundle, SpiffeId};
use ferrule_node_agent::identity::{SignedSvid, WorkloadCert};
use ferrule_node_agent::netns::Netns;
use ferrule_node_agent::proxy::hostile;
use ferrule_tests::Child;
use ferrule_tests::cluster::Pod;
use ferrule_tests::mesh::{Mesh, TRUST_DOMAIN};
use ferrule_tests::metrics::series_value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ECHO_PORT: u16 = 9001;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/stream.py")
}

/// `stream.py ARGS` in a pod (captured), with room for many descriptors.
fn python(pod: &Pod, args: &[&str]) -> Command {
    let mut command = pod.command("sh");
    command.arg("-c").arg(format!(
        "ulimit -n $(ulimit -Hn); exec python3 -u {} {}",
        script().display(),
        args.join(" ")
    ));
    command
}

fn echo_server(mesh: &Mesh, node: usize, pod: usize) -> Child {
    let server = Child::spawn(&mut python(
        mesh.pod(node, pod),
        &["echo", &ECHO_PORT.to_string()],
    ));
    server.wait_for_line("ready", Duration::from_secs(10));
    server
}

/// One line through the mesh from `from` to `to`'s echo server: how long it took, end to end.
fn echo_once(mesh: &Mesh, from: (usize, usize), to: &Pod) -> Duration {
    let started = Instant::now();
    let out = python(
        mesh.pod(from.0, from.1),
        &["once", &to.ip.to_string(), &ECHO_PORT.to_string()],
    )
    .output()
    .unwrap();
    let elapsed = started.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said.trim(),
        "ok",
        "pod {from:?} -> {}: {said}{}\nagent {}:\n{}",
        to.ip,
        String::from_utf8_lossy(&out.stderr),
        from.0,
        mesh.agent(from.0).output()
    );
    elapsed
}

/// `ferrule_limit_hits_total{listener,limit}` on `node` (0 when absent).
fn limit_hits(mesh: &Mesh, node: usize, listener: &str, limit: &str) -> f64 {
    let series = format!("ferrule_limit_hits_total{{listener=\"{listener}\",limit=\"{limit}\"}}");
    series_value(&mesh.metrics(node), &series)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn half_open_tls_handshakes_leave_new_connections_their_normal_time() {
    ferrule_config::process::raise_open_files_limit(8192).expect("open-files limit");
    let mesh = Mesh::start_with(2, 3, &[("FERRULE_LIMITS_HANDSHAKE_TIMEOUT", "3s")]);
    mesh.enroll_all("strict");
    let target = mesh.pod(0, 0).clone();
    let _server = echo_server(&mesh, 0, 0);
    // Each measured client is a fresh identity, so each measurement includes a TLS handshake.
    let idle = echo_once(&mesh, (1, 1), &target);

    // 1,000 connections from pod (1,0)'s netns (not its cgroup: uncaptured) that stall after
    // the first bytes of a ClientHello.
    let attacker = Netns::open(&mesh.pod(1, 0).netns).unwrap();
    let rt = runtime();
    let hbone = SocketAddr::from((target.ip, 15008));
    let half_open: Vec<TcpStream> = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..1000 {
            // Beyond the per-source cap the agent resets connections, even while they connect.
            let socket = attacker.tcp_socket(false).unwrap();
            let Ok(mut tcp) = socket.connect(hbone).await else {
                continue;
            };
            // A handshake record announcing 512 bytes, of which 4 arrive.
            let _ = tcp
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
                .await;
            held.push(tcp);
        }
        held
    });
    let loaded = echo_once(&mesh, (1, 2), &target);
    assert!(
        loaded < idle * 20,
        "a new connection took {loaded:?} with 1,000 half-open handshakes, {idle:?} idle"
    );

    // Every half-open connection ends: refused beyond the per-source cap, or cut at the
    // handshake timeout.
    rt.block_on(async {
        for mut tcp in half_open {
            let mut byte = [0u8; 1];
            let ended = tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut byte)).await;
            assert!(
                matches!(ended, Ok(Ok(0) | Err(_))),
                "a half-open handshake was held: {ended:?}"
            );
        }
    });
    let refused = limit_hits(&mesh, 0, "hbone", "max_connections_per_source");
    let timed_out = limit_hits(&mesh, 0, "hbone", "handshake_timeout");
    assert_eq!(
        refused + timed_out,
        1000.0,
        "refused {refused}, timed out {timed_out}"
    );
    assert!(
        refused >= 488.0 && timed_out >= 1.0,
        "refused {refused}, timed out {timed_out}"
    );
}

#[test]
fn a_pod_opening_twenty_thousand_connections_leaves_other_pods_their_share() {
    let mesh = Mesh::start(2, 2);
    mesh.enroll_all("strict");
    let target = mesh.pod(1, 0).clone();
    let _server = echo_server(&mesh, 1, 0);
    echo_once(&mesh, (0, 1), &target);

    // 20,000 connections, from two processes (the test's open-files hard limit is 20,000).
    let floods: Vec<Child> = (0..2)
        .map(|_| {
            Child::spawn(&mut python(
                mesh.pod(0, 0),
                &[
                    "flood",
                    &target.ip.to_string(),
                    &ECHO_PORT.to_string(),
                    "10000",
                    "30",
                ],
            ))
        })
        .collect();
    let counts: Vec<String> = floods
        .iter()
        .map(|f| f.wait_for_line("flood ", Duration::from_secs(120)))
        .collect();
    let counts = counts.join("; ");
    let count = |key: &str| -> u64 {
        counts
            .split_whitespace()
            .filter_map(|kv| {
                kv.trim_end_matches(';')
                    .strip_prefix(key)?
                    .strip_prefix('=')?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let agent_fds = std::fs::read_dir(format!("/proc/{}/fd", mesh.agent(0).id()))
        .unwrap()
        .count();
    // Another pod on the same node is still served while the flood holds its connections.
    echo_once(&mesh, (0, 1), &target);

    // The pod's own view overstates what it holds: once the listener's queue is full, the
    // kernel completes some handshakes with SYN cookies and then drops them, so count what the
    // agent refused and what it holds.
    // Connections beyond the cap are reset; so are those whose original destination the
    // flood itself evicted from the pod's own flow map before the agent accepted them.
    let cap = 4096;
    let refused = limit_hits(&mesh, 0, "outbound", "max_connections_per_pod")
        + limit_hits(&mesh, 0, "outbound", "pod_flow_slots");
    assert!(
        refused >= 10_000.0,
        "refusals counted: {refused}; the pod saw {counts}"
    );
    assert!(
        agent_fds < 2 * cap + 1000,
        "the agent holds {agent_fds} descriptors for one pod's flood ({counts})"
    );
    assert!(count("reset") >= 10_000, "the pod saw {counts}");
}

/// A certificate of the mesh's CA for `name` in namespace shop, and the mesh's trust bundle.
fn workload_cert(mesh: &Mesh, name: &str) -> (WorkloadCert, SharedBundle) {
    let ca = TestCa::load(&mesh.cp.layout, mesh.cp.trust_domain.clone());
    let id = sa(name);
    let (svid, key) = ca
        .issue_with_new_key(&id, Duration::from_secs(3600), &[], &[])
        .unwrap();
    let signed = SignedSvid {
        chain: svid.full_chain(),
        serial: svid.serial,
        not_before: svid.not_before,
        not_after: svid.not_after,
        bundle_roots: Vec::new(),
    };
    let cert = WorkloadCert::new(&id, &key, signed).unwrap();
    (cert, SharedBundle::new(ca.bundle().clone()))
}

fn sa(name: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/{name}")).unwrap()
}

#[test]
fn http2_rapid_reset_and_made_you_reset_get_goaway_and_are_counted() {
    let mesh = Mesh::start(2, 2);
    mesh.enroll_all("strict");
    let target = mesh.pod(0, 0).clone();
    let _server = echo_server(&mesh, 0, 0);
    let (cert, bundle) = workload_cert(&mesh, "pod-1-0");
    let attacker = Netns::open(&mesh.pod(1, 0).netns).unwrap();
    let hbone = SocketAddr::from((target.ip, 15008));
    let app = SocketAddr::from((target.ip, ECHO_PORT));
    let server_id = sa("pod-0-0");
    let rt = runtime();
    let connect = || async {
        let tcp = attacker
            .tcp_socket(false)
            .unwrap()
            .connect(hbone)
            .await
            .unwrap();
        hostile::tls(tcp, &cert, &bundle, &server_id)
            .await
            .expect("the agent accepts a valid workload certificate")
    };
    let (rapid, made_you) = rt.block_on(async {
        let rapid = hostile::rapid_reset(connect().await, app, 500)
            .await
            .unwrap();
        let made_you = hostile::made_you_reset(connect().await, app, 500)
            .await
            .unwrap();
        (rapid, made_you)
    });
    let calm = Some(h2::Reason::ENHANCE_YOUR_CALM);
    assert_eq!(rapid.goaway, calm, "rapid reset: {rapid:?}");
    assert_eq!(made_you.goaway, calm, "MadeYouReset: {made_you:?}");
    let counted = limit_hits(&mesh, 0, "hbone", "http2_enhance_your_calm");
    assert!(counted >= 2.0, "GOAWAYs counted: {counted}");
    // The paced variant: resets arriving after the agent accepted each stream.
    let paced =
        rt.block_on(async { hostile::paced_rapid_reset(connect().await, app, 20_000).await });
    let paced = paced.unwrap();
    assert!(
        paced.streams < 20_000,
        "paced rapid reset was not cut: {paced:?}"
    );
    // Cut by the peer-reset budget, or by h2 when the resets reached it before the accepts.
    let budget = limit_hits(&mesh, 0, "hbone", "max_peer_reset_streams");
    let calm = limit_hits(&mesh, 0, "hbone", "http2_enhance_your_calm");
    assert!(
        budget + calm > counted,
        "paced rapid reset not counted: budget {budget}, enhance_your_calm {calm} (was {counted})"
    );
    // Well-behaved tunnels are still served.
    echo_once(&mesh, (1, 1), &target);
}
