//! `ferrule check` as a user runs it: against a fake control plane over the mesh's real TLS
//! settings, a dead address, a skewed control plane clock, and bad arguments; its Kubernetes
//! items against the API server double.

#[path = "support/common.rs"]
mod common;
#[path = "support/fake_cp.rs"]
mod fake_cp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Run, init_ca, run, run_async};
use fake_cp::{FakeAdmin, bundle_of, control_plane_cert, serve};
use ferrule_kube_double::KubeDouble;
use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec, ServiceAccount, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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
            && out.stderr.contains("node, kubernetes, control-plane, ca")
            && out.stderr.contains("try '--help'"),
        "stderr: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{out:#?}");
}

// The Kubernetes group, against the in-process API server double with the agent's own service
// account token: the double allows everything but what a test denies.

const AGENT_USER: &str = "system:serviceaccount:ferrule-system:ferrule-agent";
const KUBE_CHECKS: [&str; 4] = [
    "kubernetes-api",
    "kubernetes-rbac",
    "cni-chain",
    "node-taint",
];
const CHAINED: &str = r#"{"cniVersion": "1.0.0", "name": "k8s", "plugins": [
    {"type": "bridge", "bridge": "cni0"}, {"type": "ferrule-cni"}]}"#;
const UNCHAINED: &str = r#"{"cniVersion": "1.0.0", "name": "k8s", "plugins": [
    {"type": "bridge", "bridge": "cni0"}]}"#;

struct Cluster {
    tmp: tempfile::TempDir,
    api: KubeDouble,
}

/// An API server double with node `node-a` (carrying `taints`), the agent's service account and
/// a kubeconfig holding its token; `conflist` is the node's primary CNI configuration.
async fn cluster(conflist: &str, taints: Vec<Taint>) -> Cluster {
    let tmp = tempfile::tempdir().unwrap();
    let api = KubeDouble::new();
    api.start_local().expect("serve the API double");
    let meta = |name: &str, namespace: Option<&str>| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    };
    api.put(&Namespace {
        metadata: meta("ferrule-system", None),
        ..Namespace::default()
    })
    .unwrap();
    api.put(&ServiceAccount {
        metadata: meta("ferrule-agent", Some("ferrule-system")),
        ..ServiceAccount::default()
    })
    .unwrap();
    api.put(&Node {
        metadata: meta("node-a", None),
        spec: Some(NodeSpec {
            taints: Some(taints),
            ..NodeSpec::default()
        }),
        ..Node::default()
    })
    .unwrap();
    let token = api
        .issue_token(
            "ferrule-system",
            "ferrule-agent",
            &[],
            None,
            Duration::from_secs(3600),
        )
        .expect("a token for ferrule-agent")
        .token;
    api.write_kubeconfig(&tmp.path().join("kubeconfig"), &token)
        .unwrap();
    let net_d = tmp.path().join("net.d");
    std::fs::create_dir(&net_d).unwrap();
    std::fs::write(net_d.join("10-k8s.conflist"), conflist).unwrap();
    Cluster { tmp, api }
}

impl Cluster {
    /// `ferrule check ARGS --cni-conf-dir NET_D --node node-a` with KUBECONFIG set.
    async fn check(&self, args: &[&str]) -> Run {
        let net_d = self.tmp.path().join("net.d");
        let mut full = vec!["check"];
        full.extend(args);
        full.extend([
            "--cni-conf-dir",
            net_d.to_str().unwrap(),
            "--node",
            "node-a",
        ]);
        let mut cmd = common::ferrule(&full);
        cmd.env("KUBECONFIG", self.tmp.path().join("kubeconfig"));
        common::run_command(cmd).await
    }
}

fn not_ready_taint() -> Taint {
    Taint {
        key: "ferrule.io/agent-not-ready".to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Taint::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_items_pass_for_the_agents_rbac_a_chained_cni_and_an_untainted_node() {
    let cluster = cluster(CHAINED, Vec::new()).await;
    let out = cluster.check(&["-o", "json", "--only", "kubernetes"]).await;
    let report = json(&out);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, KUBE_CHECKS, "{report:#}");
    for name in KUBE_CHECKS {
        let check = item(&report, name);
        assert_eq!(check["status"], "ok", "{name}: {report:#}");
        assert_eq!(check["group"], "kubernetes", "{check:#}");
    }
    let api = item(&report, "kubernetes-api")["detail"].as_str().unwrap();
    assert!(
        api.starts_with(&cluster.api.url().unwrap()) && api.contains("v1.33.0"),
        "{api}"
    );
    assert_eq!(
        item(&report, "kubernetes-rbac")["detail"],
        "this user holds all 8 permissions of the ferrule-agent ClusterRole"
    );
    assert!(
        cluster.api.requests("create", "selfsubjectaccessreviews") >= 8,
        "one review per permission"
    );
    assert_eq!(out.code, 0, "{out:#?}");

    // The table, and the control plane's rules asked for by name.
    let out = cluster
        .check(&["--only", "kubernetes", "--component", "control-plane"])
        .await;
    let (line, _) = table_lines(&out, "kubernetes-rbac");
    assert!(
        line.starts_with(
            "✔ kubernetes-rbac  this user holds all 17 permissions of the \
             ferrule-control-plane ClusterRole"
        ),
        "{line:?}\n{}",
        out.stdout
    );
    assert_eq!(out.code, 0, "{out:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_verb_fails_rbac_naming_the_verb_and_resource() {
    let cluster = cluster(CHAINED, Vec::new()).await;
    cluster.api.deny(AGENT_USER, "patch", "nodes");
    cluster.api.deny(AGENT_USER, "watch", "pods");
    let out = cluster.check(&["--only", "kubernetes"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    let (line, fix) = table_lines(&out, "kubernetes-rbac");
    assert_eq!(
        line,
        "✘ kubernetes-rbac  this user may not watch pods, patch nodes (ferrule-agent needs them)"
    );
    assert!(
        fix.unwrap_or_default().contains(
            "fix: apply the ferrule-agent ClusterRole and binding from `ferrule install kubernetes`"
        ),
        "{fix:?}"
    );
    assert_eq!(out.stderr, "error: 1 of 4 checks failed: kubernetes-rbac\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tainted_node_warns_that_the_agent_is_not_ready() {
    let cluster = cluster(CHAINED, vec![not_ready_taint()]).await;
    let out = cluster.check(&["-o", "json", "--only", "kubernetes"]).await;
    let report = json(&out);
    let taint = item(&report, "node-taint");
    assert_eq!(taint["status"], "warn", "{report:#}");
    assert_eq!(
        taint["detail"],
        "node node-a still carries the ferrule.io/agent-not-ready taint"
    );
    assert!(
        taint["hint"]
            .as_str()
            .unwrap()
            .starts_with("the agent is not ready yet"),
        "{taint:#}"
    );
    assert_eq!(out.code, 0, "a warning does not fail: {out:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchained_conflist_fails_the_cni_item() {
    let cluster = cluster(UNCHAINED, Vec::new()).await;
    let out = cluster.check(&["--only", "kubernetes"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    let (line, fix) = table_lines(&out, "cni-chain");
    assert!(
        line.starts_with("✘ cni-chain ")
            && line.ends_with("10-k8s.conflist (the primary CNI configuration) does not chain ferrule-cni: new pods are not meshed"),
        "{line:?}"
    );
    assert!(
        fix.unwrap_or_default()
            .contains("the agent chains ferrule-cni"),
        "{fix:?}"
    );
    assert_eq!(out.stderr, "error: 1 of 4 checks failed: cni-chain\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_kubeconfig_the_items_are_skipped_unless_asked_for() {
    // common::ferrule points KUBECONFIG at a file that does not exist.
    let out = run_async(&["-o", "json", "check", "--only", "ca", "--only", "node"]).await;
    let skipped = run_async(&["-o", "json", "check"]).await;
    let report = json(&skipped);
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["group"] != "kubernetes"),
        "no Kubernetes item without a kubeconfig: {report:#}"
    );
    let without: usize = json(&out)["checks"].as_array().unwrap().len();
    assert_eq!(
        report["checks"].as_array().unwrap().len(),
        without + 2,
        "node, control-plane (2) and ca only: {report:#}"
    );

    let asked = run_async(&["check", "--kubernetes", "--only", "kubernetes"]).await;
    assert_eq!(asked.code, 1, "{asked:#?}");
    let (line, fix) = table_lines(&asked, "kubernetes-api");
    assert!(
        line.starts_with("✘ kubernetes-api   no Kubernetes API access: "),
        "{line:?}"
    );
    assert!(
        fix.unwrap_or_default().contains("set KUBECONFIG"),
        "{fix:?}"
    );
    let (line, _) = table_lines(&asked, "kubernetes-rbac");
    assert!(line.contains("not checked"), "{line:?}");
}
