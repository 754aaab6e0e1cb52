//! `ferrule check` as a user runs it: against a fake control plane over the mesh's real TLS
//! settings, a dead address, a skewed control plane clock, and bad arguments.

#[path = "support/common.rs"]
mod common;
#[path = "support/fake_cp.rs"]
mod fake_cp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{Run, init_ca, run, run_async};
use fake_cp::{FakeAdmin, bundle_of, control_plane_cert, serve};
use serde_json::Value;

const NODE_CHECKS: [&str; 5] = ["kernel", "ebpf", "bpffs", "cgroup2", "privileges"];
const REMOTE_CHECKS: [&str; 7] = [
    "control-plane",
    "clock-skew",
    "ca-bundle",
    "ca-chain",
    "offline-crls",
    "admin-cert",
    "issuing-ca",
];

struct Mesh {
    _tmp: tempfile::TempDir,
    ca: PathBuf,
    addr: SocketAddr,
}

/// A CA and a fake control plane whose clock is `clock_offset_ms` off ours.
async fn mesh(clock_offset_ms: i64) -> Mesh {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "example.org");
    let admin = FakeAdmin {
        clock_offset_ms,
        ..FakeAdmin::default()
    };
    let addr = serve(control_plane_cert(&ca), bundle_of(&ca), admin).await;
    Mesh {
        _tmp: tmp,
        ca,
        addr,
    }
}

impl Mesh {
    async fn check(&self, args: &[&str]) -> Run {
        let addr = self.addr.to_string();
        check_at(&self.ca, &addr, args).await
    }
}

/// `ferrule check ARGS --ca-dir CA --control-plane ADDR`
async fn check_at(ca: &Path, addr: &str, args: &[&str]) -> Run {
    let mut full = vec!["check"];
    full.extend(args);
    full.extend(["--ca-dir", ca.to_str().unwrap(), "--control-plane", addr]);
    run_async(&full).await
}

fn json(out: &Run) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:#?}"))
}

/// The JSON check called `name`.
fn item<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("a checks array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

/// The table line of check `name` (`✔ name  detail`), and the line after it.
fn table_lines<'a>(out: &'a Run, name: &str) -> (&'a str, Option<&'a str>) {
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no line for {name:?} in:\n{}", out.stdout));
    (lines[at], lines.get(at + 1).copied())
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_control_plane_and_ca_pass_in_both_formats() {
    let mesh = mesh(0).await;

    let out = mesh.check(&["-o", "json"]).await;
    let report = json(&out);
    for name in REMOTE_CHECKS {
        let check = item(&report, name);
        assert_eq!(check["status"], "ok", "{name}: {check:#}");
        assert!(check.get("hint").is_none(), "no fix for a pass: {check:#}");
    }
    let addr = mesh.addr.to_string();
    let reach = item(&report, "control-plane")["detail"].as_str().unwrap();
    assert_eq!(
        reach,
        format!(
            "{addr} answered as spiffe://example.org/ferrule/control-plane (configuration \
             version 7, 1 of 2 agents connected)"
        )
    );
    let clock = item(&report, "clock-skew")["detail"].as_str().unwrap();
    assert!(clock.starts_with("this clock "), "{clock}");
    assert!(
        item(&report, "admin-cert")["detail"]
            .as_str()
            .unwrap()
            .starts_with("spiffe://example.org/ferrule/admin/admin verifies under the bundle"),
        "{report:#}"
    );
    // The node checks judge this machine; whatever they find, the exit status must follow them.
    let node_ok = NODE_CHECKS
        .iter()
        .all(|name| item(&report, name)["ok"] == true);
    assert_eq!(report["ok"], node_ok, "{report:#}");
    assert_eq!(out.code, if node_ok { 0 } else { 1 }, "{out:#?}");

    let out = mesh.check(&[]).await;
    for name in REMOTE_CHECKS {
        let (line, next) = table_lines(&out, name);
        assert!(line.starts_with("✔ "), "{name}: {line:?}\n{}", out.stdout);
        assert!(
            !next.is_some_and(|l| l.trim_start().starts_with("fix:")),
            "no fix line under a pass:\n{}",
            out.stdout
        );
    }
    let summary = out.stdout.lines().last().unwrap();
    assert!(summary.starts_with("12 checks: "), "{summary}");
    assert_eq!(out.code, if node_ok { 0 } else { 1 }, "{out:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_control_plane_fails_with_its_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "example.org");
    let table = check_at(&ca, "127.0.0.1:1", &["--only", "control-plane"]).await;
    assert_eq!(table.code, 1, "{table:#?}");
    let (line, fix) = table_lines(&table, "control-plane");
    assert_eq!(
        line,
        "✘ control-plane  cannot reach the control plane at 127.0.0.1:1: connection refused"
    );
    assert_eq!(
        fix.map(str::trim),
        Some("fix: is ferrule-control-plane running? (--control-plane or FERRULE_CONTROL_PLANE)")
    );
    let (line, _) = table_lines(&table, "clock-skew");
    assert!(
        line.starts_with("✘ clock-skew     not measured"),
        "{line:?}"
    );
    assert!(
        table
            .stdout
            .ends_with("2 checks: 0 passed, 0 warned, 2 failed\n"),
        "{}",
        table.stdout
    );
    assert_eq!(
        table.stderr,
        "error: 2 of 2 checks failed: control-plane, clock-skew\n"
    );

    let out = check_at(
        &ca,
        "127.0.0.1:1",
        &["-o", "json", "--only", "control-plane"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:#?}");
    let report = json(&out);
    assert_eq!(report["ok"], false);
    let reach = item(&report, "control-plane");
    assert_eq!(reach["ok"], false);
    assert_eq!(reach["status"], "fail");
    assert_eq!(reach["group"], "control-plane");
    assert_eq!(
        reach["hint"],
        "is ferrule-control-plane running? (--control-plane or FERRULE_CONTROL_PLANE)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn skewed_control_plane_clock_fails_with_the_ntp_fix() {
    // The control plane's clock runs a minute behind ours.
    let mesh = mesh(-60_000).await;

    let out = mesh.check(&["-o", "json", "--only", "control-plane"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    let report = json(&out);
    assert_eq!(item(&report, "control-plane")["ok"], true, "{report:#}");
    let clock = item(&report, "clock-skew");
    assert_eq!(clock["ok"], false, "{clock:#}");
    let detail = clock["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("this clock is 60.0") || detail.starts_with("this clock is 59.9"),
        "about a minute off: {detail}"
    );
    assert!(detail.contains("ahead of the control plane's"), "{detail}");
    let hint = clock["hint"].as_str().unwrap();
    assert!(
        hint.contains("chrony") && hint.contains("systemd-timesyncd"),
        "{hint}"
    );

    let out = mesh.check(&["--only", "control-plane"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    let (line, fix) = table_lines(&out, "clock-skew");
    assert!(
        line.starts_with("✘ clock-skew     this clock is ") && line.contains("ahead of"),
        "{line:?}"
    );
    let fix = fix.unwrap_or_default().trim();
    assert!(
        fix.starts_with("fix: keep the clocks within 5s") && fix.contains("chrony"),
        "{fix:?}"
    );
    assert_eq!(out.stderr, "error: 1 of 2 checks failed: clock-skew\n");
}

#[test]
fn missing_admin_identity_fails_the_remote_checks_with_the_flags() {
    let out = run(&["check", "--only", "control-plane", "--only", "ca"]);
    assert_eq!(out.code, 1, "{out:#?}");
    let (line, fix) = table_lines(&out, "control-plane");
    assert!(line.contains("no admin identity"), "{line:?}");
    let fix = fix.unwrap_or_default();
    assert!(
        fix.contains("--ca-dir") && fix.contains("FERRULE_CA_DIR") && fix.contains("--only node"),
        "{fix:?}"
    );
    let (line, _) = table_lines(&out, "ca-bundle");
    assert!(line.starts_with("✘ ca-bundle"), "{line:?}");
}

#[test]
fn unknown_group_is_a_usage_error() {
    let out = run(&["check", "--only", "nonsense"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr
            .contains("invalid value 'nonsense' for '--only <GROUP>'")
            && out.stderr.contains("node, control-plane, ca")
            && out.stderr.contains("try '--help'"),
        "stderr: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{out:#?}");
}
