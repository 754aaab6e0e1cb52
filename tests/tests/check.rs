//! `ferrule check` against the real control plane: the Admin call goes through, the control
//! plane reports its clock (so the skew is measured), and its CA directory passes the CA checks.

use std::process::Command;

use ferrule_tests::{ControlPlaneFixture, binary};
use serde_json::Value;

#[test]
fn remote_and_ca_checks_pass_against_the_real_control_plane() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let out = Command::new(binary("ferrule"))
        .args([
            "-o",
            "json",
            "check",
            "--only",
            "control-plane",
            "--only",
            "ca",
        ])
        .arg("--ca-dir")
        .arg(cp.layout.dir())
        .args(["--control-plane", &cp.addr.to_string()])
        .env_remove("FERRULE_CA_DIR")
        .env_remove("FERRULE_CONTROL_PLANE")
        .output()
        .expect("running ferrule");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let checks = report["checks"].as_array().expect("checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "control-plane",
            "clock-skew",
            "ca-bundle",
            "ca-chain",
            "offline-crls",
            "admin-cert",
            "issuing-ca"
        ]
    );
    for check in checks {
        assert_eq!(check["status"], "ok", "every check should pass: {report:#}");
    }
    // A control plane that did not report its time would make this a warning.
    let clock = checks[1]["detail"].as_str().unwrap();
    assert!(
        clock.starts_with("this clock ") && clock.contains("round trip"),
        "{clock}"
    );
    assert_eq!(out.status.code(), Some(0), "{report:#}");
}
