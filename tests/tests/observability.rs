//! What operators see of a real connection: one JSON access-log line on each agent with both
//! identities, and the metrics that name them.

use std::path::PathBuf;
use std::time::Duration;

use ferrule_tests::Child;
use ferrule_tests::mesh::{Mesh, TRUST_DOMAIN};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/stream.py")
}

/// `stream.py MODE 8080` in pod (0, 0), once it is listening.
fn server(mesh: &Mesh, mode: &str) -> Child {
    let server = Child::spawn(
        mesh.pod(0, 0)
            .command("python3")
            .arg("-u")
            .arg(script())
            .args([mode, "8080"]),
    );
    server.wait_for_line("ready", Duration::from_secs(10));
    server
}

#[test]
fn a_connection_is_logged_as_json_with_both_identities_and_counted_in_metrics() {
    let mesh = Mesh::start(2, 1);
    mesh.enroll_all("strict");
    let _server = server(&mesh, "chat");
    let target = format!("{}:8080", mesh.pod(0, 0).ip);
    let out = mesh
        .pod(1, 0)
        .command("python3")
        .arg(script())
        .args(["once", &mesh.pod(0, 0).ip.to_string(), "8080"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    let (client_id, server_id) = (
        format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/pod-1-0"),
        format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/pod-0-0"),
    );
    for (node, direction) in [(1, "outbound"), (0, "inbound")] {
        let entry = mesh.wait_for_access(node, Duration::from_secs(10), |e| {
            e["destination_address"] == target.as_str()
        });
        assert_eq!(entry["direction"], direction, "{entry}");
        assert_eq!(entry["source_identity"], client_id.as_str(), "{entry}");
        assert_eq!(entry["destination_identity"], server_id.as_str(), "{entry}");
        assert_eq!(entry["decision"], "allow", "{entry}");
        assert_eq!(entry["close_reason"], "ok", "{entry}");
        assert_eq!(
            entry["bytes_to_destination"], 6,
            "\"hello\\n\" went out: {entry}"
        );
        assert_eq!(entry["bytes_to_source"], 6, "and came back: {entry}");
        for field in ["time", "source_address", "duration_ms", "rule"] {
            assert!(!entry[field].is_null(), "{field} missing: {entry}");
        }
    }
    let inbound = mesh.wait_for_access(0, Duration::from_secs(1), |e| {
        e["destination_address"] == target.as_str()
    });
    assert_eq!(inbound["rule"], "no_policy", "{inbound}");

    let metrics = mesh.metrics(0);
    let opened = format!(
        "ferrule_connections_opened_total{{direction=\"inbound\",source_identity=\"{client_id}\",destination_identity=\"{server_id}\"}} 1"
    );
    assert!(metrics.contains(&opened), "missing {opened} in:\n{metrics}");
    for series in [
        format!("ferrule_certificate_expiry_timestamp_seconds{{identity=\"{server_id}\"}}"),
        "ferrule_authz_decisions_total{action=\"allow\",policy=\"no_policy\"} 1".to_owned(),
        "ferrule_config_connected 1".to_owned(),
        "ferrule_certificate_renewals_total{identity=".to_owned(),
        "ferrule_plaintext_accepted_total{namespace=\"shop\",pod=\"pod-0-0\"} 0".to_owned(),
    ] {
        assert!(metrics.contains(&series), "missing {series} in:\n{metrics}");
    }
}

#[test]
fn applications_ask_the_pod_local_endpoint_who_is_on_the_other_end() {
    let mesh = Mesh::start(2, 1);
    mesh.enroll_all("strict");
    let server = server(&mesh, "peer-server");
    let out = mesh
        .pod(1, 0)
        .command("python3")
        .arg(script())
        .args(["peer-client", &mesh.pod(0, 0).ip.to_string(), "8080"])
        .output()
        .unwrap();
    let client_said = String::from_utf8_lossy(&out.stdout).into_owned();
    let answer = |text: &str| -> serde_json::Value {
        let json = text
            .lines()
            .find_map(|l| l.strip_prefix("peer "))
            .unwrap_or_else(|| panic!("no peer answer in {text:?}"));
        serde_json::from_str(json).unwrap()
    };
    let (client_id, server_id) = (
        format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/pod-1-0"),
        format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/pod-0-0"),
    );
    let client_view = answer(&client_said);
    assert_eq!(client_view["direction"], "outbound", "{client_view}");
    assert_eq!(
        client_view["peer_identity"],
        server_id.as_str(),
        "{client_view}"
    );
    assert_eq!(
        client_view["local_identity"],
        client_id.as_str(),
        "{client_view}"
    );
    let server_said = server.wait_for_line("peer", Duration::from_secs(10));
    let server_view = answer(&server_said);
    assert_eq!(server_view["direction"], "inbound", "{server_view}");
    assert_eq!(
        server_view["peer_identity"],
        client_id.as_str(),
        "{server_view}"
    );

    // Only the pod's own mesh connections are known; a bad query is a clear 400.
    let curl = |url: &str| {
        let out = mesh
            .pod(1, 0)
            .command("curl")
            .args(["-sS", "-w", " %{http_code}", url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let unknown = curl("http://127.0.0.1:15021/v1/peer?local=127.0.0.1:1");
    assert!(
        unknown.ends_with("404") && unknown.contains("no mesh connection"),
        "{unknown}"
    );
    let bad = curl("http://127.0.0.1:15021/v1/peer?local=nonsense");
    assert!(bad.ends_with("400") && bad.contains("IP:PORT"), "{bad}");
}
