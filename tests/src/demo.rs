//! The main demo (`cargo xtask demo`): a two-node mesh of network-namespace nodes and pods with the
//! real control plane and agents; an unmodified HTTP client in one pod fetches a page from a pod
//! on the other node, and the demo shows the proof: the response, both identities from the
//! agents' logs, and what `tshark` saw on the wire between the nodes (TLS 1.3 only, no plaintext).

use std::time::Duration;

use crate::Child;
use crate::mesh::Mesh;

pub const MARKER: &str = "hello-from-pod-0-0-over-ferrule";

fn step(text: &str) {
    println!("\n==> {text}");
}

/// Runs the demo on `mesh` (already started); returns an error text if any proof is missing.
pub fn run(mesh: &Mesh) -> Result<(), String> {
    step("cluster: 2 nodes x 2 pods (network namespaces, veth, bridges, cgroup v2)");
    for node in mesh.cluster.nodes() {
        println!(
            "  {} underlay {} pods {}",
            node.name, node.underlay_ip, node.pod_cidr
        );
    }
    for pod in mesh.cluster.pods() {
        println!(
            "  {:<8} {:<12} spiffe://example.org/ns/{}/sa/{}",
            pod.name, pod.ip, pod.namespace, pod.service_account
        );
    }

    step("enrolling every pod with its node's agent (strict mode: plaintext in is dropped)");
    mesh.enroll_all("strict");
    println!("  4 pods enrolled; eBPF capture attached to their cgroups");

    step("starting a plain HTTP server in pod-0-0 (python3 -m http.server)");
    let www = mesh.work.path().join("www");
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    std::fs::write(www.join("index.html"), format!("{MARKER}\n")).map_err(|e| e.to_string())?;
    let server_pod = mesh.pod(0, 0);
    let _server = Child::spawn(
        server_pod
            .command("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "0.0.0.0",
                "--directory",
            ])
            .arg(&www),
    );
    _server.wait_for_line("Serving HTTP", Duration::from_secs(10));

    step("capturing the link between the nodes with tshark (node-1's eth0)");
    let tshark = Child::spawn(
        mesh.node(1)
            .command("tshark")
            .args([
                "-l",
                "-n",
                "-i",
                "eth0",
                "-f",
                "tcp",
                "-d",
                "tcp.port==15008,tls",
            ])
            .args(["-T", "fields", "-E", "separator=|"])
            .args([
                "-e",
                "ip.src",
                "-e",
                "tcp.srcport",
                "-e",
                "ip.dst",
                "-e",
                "tcp.dstport",
            ])
            .args([
                "-e",
                "tls.record.version",
                "-e",
                "tls.handshake.extensions.supported_version",
            ])
            .args(["-e", "_ws.col.Protocol", "-e", "data.text"]),
    );
    tshark.wait_for_line("Capturing on", Duration::from_secs(20));

    let url = format!("http://{}:8080/", server_pod.ip);
    step(&format!(
        "curl {url}   (from pod-1-1 on node-1, an unmodified client)"
    ));
    let out = mesh
        .pod(1, 1)
        .command("curl")
        .args(["-sS", "--max-time", "10", &url])
        .output()
        .map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&out.stdout);
    println!("  response: {}", body.trim());
    if body.trim() != MARKER {
        return Err(format!(
            "unexpected response: {body} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    std::thread::sleep(Duration::from_secs(2));
    let wire = tshark.output();
    drop(tshark);

    step("identities, from the agents' access logs (one JSON line per connection)");
    let app = format!("{}:8080", server_pod.ip);
    let to_app = |e: &serde_json::Value| e["destination_address"].as_str() == Some(app.as_str());
    let client_agent = mesh.wait_for_access(1, Duration::from_secs(10), to_app);
    let server_agent = mesh.wait_for_access(0, Duration::from_secs(10), to_app);
    println!("  node-1 agent (outbound): {client_agent}");
    println!("  node-0 agent (inbound):  {server_agent}");

    step("what crossed the wire between the nodes");
    let packets: Vec<&str> = wire.lines().filter(|l| l.contains('|')).collect();
    let tunnel = packets
        .iter()
        .filter(|l| l.contains("|15008|") || l.contains("|15008"))
        .count();
    let versions: Vec<&str> = packets
        .iter()
        .filter_map(|l| l.split('|').nth(5))
        .filter(|v| !v.is_empty())
        .collect();
    println!(
        "  {} TCP packets, {} of them to or from port 15008 (HBONE)",
        packets.len(),
        tunnel
    );
    println!(
        "  TLS supported_versions in the handshakes: {} (0x0304 = TLS 1.3)",
        versions.join(", ")
    );
    let tls13 = packets.iter().filter(|l| l.contains("TLSv1.3")).count();
    println!("  {tls13} packets decoded as TLSv1.3; the rest are TCP segments of the same tunnel");
    let plaintext = wire.contains(MARKER) || packets.iter().any(|l| l.contains("|8080|"));
    println!(
        "  plaintext marker or app port on the link: {}",
        if plaintext { "YES (leak!)" } else { "none" }
    );
    if plaintext
        || tunnel == 0
        || !versions.iter().all(|v| v.contains("0x0304"))
        || versions.is_empty()
    {
        return Err("the capture does not show a TLS 1.3-only link".into());
    }
    step("the control plane's inventory (ferrule node list, ferrule certs)");
    for args in [&["node", "list"][..], &["certs"][..]] {
        let out = mesh.ferrule(args);
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    println!("\ndemo complete: the request crossed nodes only inside TLS 1.3 mutual TLS");
    Ok(())
}
