//! What operators see of a real connection: one JSON access-log line on each agent with both
//! identities, and the metrics that name them.

use std::path::PathBuf;
use std::time::Duration;

use ferrule_tests::Child;
use ferrule_tests::mesh::{Mesh, TRUST_DOMAIN};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/stream.py")
}

#[test]
fn a_connection_is_logged_as_json_with_both_identities_and_counted_in_metrics() {
    let mesh = Mesh::start(2, 1);
    mesh.enroll_all("strict");
    let server = Child::spawn(
        mesh.pod(0, 0)
            .command("python3")
            .arg("-u")
            .arg(script())
            .args(["chat", "8080"]),
    );
    server.wait_for_line("ready", Duration::from_secs(10));
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
