//! The data path end to end: unmodified clients in pods reach servers in other pods through the
//! eBPF capture and HBONE tunnels, and the link between nodes carries only TLS.

use std::time::Duration;

use ferrule_tests::mesh::Mesh;

const MARKER: &str = "ferrule-plaintext-marker-7f3a";

/// A one-file HTTP server in a pod (python3's http.server, as unmodified as apps come).
fn http_server(mesh: &Mesh, node: usize, pod: usize, port: u16) -> ferrule_tests::Child {
    let dir = mesh.work.path().join(format!("www-{node}-{pod}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("marker.txt"), format!("{MARKER}\n")).unwrap();
    ferrule_tests::apps::http_server(mesh.pod(node, pod), &dir, port)
}

fn curl(mesh: &Mesh, node: usize, pod: usize, url: &str) -> std::process::Output {
    mesh.pod(node, pod)
        .command("curl")
        .args(["-sS", "--max-time", "10", url])
        .output()
        .unwrap()
}

#[test]
fn pods_reach_each_other_only_through_mutual_tls() {
    let mesh = Mesh::start(2, 2);
    mesh.enroll_all("strict");
    let _server = http_server(&mesh, 0, 0, 8080);
    let server_ip = mesh.pod(0, 0).ip;

    // Watch the link between the nodes while a client on the other node fetches the marker.
    // -A prints every payload as text, so a plaintext marker would show up in the output.
    let capture = ferrule_tests::Child::spawn(
        mesh.node(1)
            .command("tcpdump")
            .args(["-l", "-n", "-A", "-i", "eth0", "tcp"]),
    );
    capture.wait_for_line("listening on", Duration::from_secs(10));

    let url = format!("http://{server_ip}:8080/marker.txt");
    let cross = curl(&mesh, 1, 1, &url);
    assert_eq!(
        String::from_utf8_lossy(&cross.stdout).trim(),
        MARKER,
        "cross-node: {}\nagent 1:\n{}\nagent 0:\n{}",
        String::from_utf8_lossy(&cross.stderr),
        mesh.agent(1).output(),
        mesh.agent(0).output()
    );
    let same = curl(&mesh, 0, 1, &url);
    assert_eq!(
        String::from_utf8_lossy(&same.stdout).trim(),
        MARKER,
        "same node"
    );

    std::thread::sleep(Duration::from_millis(500));
    let captured = capture.output();
    drop(capture);
    let tunnel = format!("{server_ip}.15008");
    assert!(
        captured.contains(&tunnel),
        "the capture saw no tunnel to {tunnel}:\n{captured}\nagent 1:\n{}",
        mesh.agent(1).output()
    );
    assert!(
        !captured.contains(MARKER),
        "the marker crossed the underlay in plaintext:\n{captured}"
    );
    assert!(
        !captured.contains(&format!("{server_ip}.8080")),
        "plaintext to the app port crossed the underlay"
    );

    // Both identities, from the client's agent.
    let line = mesh
        .agent(1)
        .wait_for_line("outbound connection closed", Duration::from_secs(20));
    assert!(
        line.contains("spiffe://example.org/ns/shop/sa/pod-1-1"),
        "{line}"
    );
    assert!(
        line.contains("spiffe://example.org/ns/shop/sa/pod-0-0"),
        "{line}"
    );
}

/// `openssl s_client` from the node against a pod's HBONE port; returns (exit ok, all output).
fn s_client(mesh: &Mesh, pod_ip: std::net::Ipv4Addr, extra: &[&str]) -> (bool, String) {
    let out = mesh
        .node(0)
        .command("sh")
        .arg("-c")
        .arg(format!(
            "(echo hello; sleep 1) | timeout 10 openssl s_client -connect {pod_ip}:15008 -servername mesh {} 2>&1",
            extra.join(" ")
        ))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn hbone_port_refuses_tls12_missing_and_foreign_client_certificates() {
    let mesh = Mesh::start(1, 1);
    mesh.enroll_all("strict");
    let ip = mesh.pod(0, 0).ip;

    let (_, no_cert) = s_client(&mesh, ip, &["-tls1_3"]);
    assert!(
        no_cert.contains("alert certificate required"),
        "TLS 1.3 without a client certificate: {no_cert}"
    );
    let (ok, tls12) = s_client(&mesh, ip, &["-tls1_2"]);
    assert!(
        !ok && tls12.contains("alert protocol version"),
        "TLS 1.2: {tls12}"
    );

    let other = ferrule_tests::ControlPlaneFixture::new("example.org");
    let cert = other.layout.admin_cert().display().to_string();
    let key = other.layout.admin_key().display().to_string();
    let (_, foreign) = s_client(&mesh, ip, &["-tls1_3", "-cert", &cert, "-key", &key]);
    assert!(
        foreign.contains("unknown ca"),
        "certificate from another CA: {foreign}"
    );

    // The agent names each refusal's reason.
    let log = mesh.agent(0).output();
    assert!(log.contains("unknown_ca"), "agent log:\n{log}");
}

#[test]
fn strict_pods_drop_plaintext_and_permissive_pods_count_it() {
    let mesh = Mesh::start(1, 2);
    assert_eq!(mesh.enroll(0, 0, "strict").0, 201);
    assert_eq!(mesh.enroll(0, 1, "permissive").0, 201);
    let _strict = http_server(&mesh, 0, 0, 8080);
    let _permissive = http_server(&mesh, 0, 1, 8080);

    // A plaintext client outside the mesh: the node itself.
    let fetch = |ip: std::net::Ipv4Addr| {
        mesh.node(0)
            .command("curl")
            .args(["-sS", "--max-time", "3"])
            .arg(format!("http://{ip}:8080/marker.txt"))
            .output()
            .unwrap()
    };
    let dropped = fetch(mesh.pod(0, 0).ip);
    assert!(
        !dropped.status.success(),
        "strict pod answered plaintext: {:?}",
        dropped
    );
    let accepted = fetch(mesh.pod(0, 1).ip);
    assert_eq!(String::from_utf8_lossy(&accepted.stdout).trim(), MARKER);

    let pods = mesh.pods_json(0);
    let uid = &mesh.pod(0, 1).uid;
    let permissive = pods
        .split("},{")
        .find(|p| p.contains(uid.as_str()))
        .unwrap_or_default();
    assert!(
        permissive.contains("\"plaintext_accepted\":1"),
        "permissive pod counts one plaintext connection: {pods}"
    );
}

#[test]
fn unenrolling_detaches_capture_and_closes_listeners() {
    let mesh = Mesh::start(1, 2);
    // Pod 0 serves outside the mesh; pod 1 is the enrolled client.
    let _server = http_server(&mesh, 0, 0, 8080);
    assert_eq!(mesh.enroll(0, 1, "strict").0, 201);
    let url = format!("http://{}:8080/marker.txt", mesh.pod(0, 0).ip);
    let through_agent = curl(&mesh, 0, 1, &url);
    assert_eq!(
        String::from_utf8_lossy(&through_agent.stdout).trim(),
        MARKER
    );
    mesh.agent(0)
        .wait_for_line("passthrough connection closed", Duration::from_secs(10));

    assert_eq!(mesh.unenroll(0, 1).0, 204);
    let listeners = mesh
        .pod(0, 1)
        .command("ss")
        .args(["-ltn"])
        .output()
        .unwrap();
    let listeners = String::from_utf8_lossy(&listeners.stdout);
    assert!(
        !listeners.contains(":15001") && !listeners.contains(":15008"),
        "{listeners}"
    );
    let direct = curl(&mesh, 0, 1, &url);
    assert_eq!(String::from_utf8_lossy(&direct.stdout).trim(), MARKER);
    std::thread::sleep(Duration::from_millis(300));
    let passthroughs = mesh
        .agent(0)
        .output()
        .matches("passthrough connection closed")
        .count();
    assert_eq!(passthroughs, 1, "the second request bypassed the agent");
}

#[test]
fn non_mesh_destinations_are_refused_when_configured() {
    let mesh = Mesh::start_with(1, 2, &[("FERRULE_NON_MESH", "deny")]);
    let _server = http_server(&mesh, 0, 0, 8080);
    assert_eq!(mesh.enroll(0, 1, "strict").0, 201);
    let url = format!("http://{}:8080/marker.txt", mesh.pod(0, 0).ip);
    let refused = curl(&mesh, 0, 1, &url);
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains(MARKER),
        "a non-mesh destination was reached"
    );
    mesh.agent(0)
        .wait_for_line("non-mesh destination refused", Duration::from_secs(10));
}
