//! `ferrule-agent uninstall` on nodes with strict pods and running agents: afterwards no
//! program of the node's capture is attached to any pod, its pins and pod list are gone, the
//! CNI plugin is unchained and deleted (Kubernetes), and the pods talk plaintext. Running it
//! again is harmless. In Kubernetes the manifests' preStop hook runs it with `--if-removed`,
//! which must leave everything in place while the agent's DaemonSet exists (an upgrade).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferrule_config::kubernetes::{ENV_DAEMONSET, ENV_POD_NAMESPACE};
use ferrule_node_agent::capture::inspect::{self, LinkIds};
use ferrule_node_agent::uninstall::{NOTHING_LEFT, UNINSTALLED};
use ferrule_tests::binary;
use ferrule_tests::kube_mesh::{KubeMesh, SYSTEM_NAMESPACE};
use ferrule_tests::mesh::Mesh;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{MARKER, fetch, marker_server};

const DAEMON_SET: &str = "ferrule-agent";

/// Runs `ferrule-agent uninstall ARGS` as `command`; its stdout, once it exited with `code`.
fn uninstall(mut command: Command, args: &[&str], code: i32) -> String {
    let out = command
        .arg("uninstall")
        .args(args)
        .output()
        .expect("running ferrule-agent uninstall");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "ferrule-agent uninstall {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

fn assert_lines(output: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            output.lines().any(|l| l.starts_with(line)),
            "no line starting with {line:?} in:\n{output}"
        );
    }
}

/// The node's pod links; a node with enrolled pods has some.
fn pinned_links(pin_dir: &Path) -> Vec<LinkIds> {
    let links = inspect::pinned_pod_links(pin_dir);
    assert!(
        !links.is_empty(),
        "no pod links under {}",
        pin_dir.display()
    );
    links
}

/// No link of `before` exists any more, nor any link to one of their programs.
fn assert_detached(before: &[LinkIds]) {
    let left: Vec<LinkIds> = inspect::loaded_links()
        .into_iter()
        .filter(|now| {
            before
                .iter()
                .any(|b| b.link == now.link || b.program == now.program)
        })
        .collect();
    assert!(
        left.is_empty(),
        "Ferrule programs still attached through links {left:?}"
    );
}

#[test]
fn uninstall_detaches_every_program_and_strict_pods_talk_plaintext_afterwards() {
    let mesh = Mesh::start(2, 1);
    mesh.enroll_all("strict");
    let _server = marker_server(mesh.pod(0, 0), mesh.work.path(), 8080);
    let server = mesh.pod(0, 0).ip;
    let agents = || format!("agent 0:\n{}", mesh.agent(0).output());
    assert_eq!(
        fetch(mesh.pod(1, 0).command("curl"), server, 8080),
        MARKER,
        "through the mesh before uninstalling\n{}",
        agents()
    );
    assert_eq!(
        fetch(mesh.node(0).command("curl"), server, 8080),
        "",
        "a strict pod answered plaintext from outside the mesh"
    );
    let nodes: Vec<String> = (0..2).map(|n| mesh.node(n).name.clone()).collect();
    let pin_dirs: Vec<PathBuf> = nodes.iter().map(|n| mesh.cp.pin_dir(n)).collect();
    let links: Vec<LinkIds> = pin_dirs.iter().flat_map(|d| pinned_links(d)).collect();

    for node in 0..2 {
        let out = uninstall(
            mesh.node(node).command(binary("ferrule-agent")),
            &["--config", mesh.agent_config(node).to_str().unwrap()],
            0,
        );
        assert_lines(
            &out,
            &[
                "agent: told the running agent to stop enrolling pods; it released 1 pod(s)",
                "capture: detached the programs from every pod",
                "pins: removed",
                "cni: not in Kubernetes mode",
                "pod state: removed",
            ],
        );
        assert_eq!(out.lines().last(), Some(UNINSTALLED), "{out}");
    }
    assert_detached(&links);
    for (dir, node) in pin_dirs.iter().zip(&nodes) {
        assert!(!dir.exists(), "{} is left", dir.display());
        let state = mesh.work.path().join(format!("agent-{node}/pods.json"));
        assert!(!state.exists(), "{} is left", state.display());
    }

    // Plain pods now, agents still running: plaintext, and visible as such on the wire.
    let wire = ferrule_tests::Child::spawn(
        mesh.node(1)
            .command("tcpdump")
            .args(["-l", "-n", "-A", "-i", "eth0", "tcp"]),
    );
    wire.wait_for_line("listening on", Duration::from_secs(10));
    assert_eq!(
        fetch(mesh.pod(1, 0).command("curl"), server, 8080),
        MARKER,
        "pod to pod after uninstalling\n{}",
        agents()
    );
    std::thread::sleep(Duration::from_millis(500));
    let captured = wire.output();
    assert!(
        captured.contains(MARKER),
        "the reply did not cross the underlay in plaintext:\n{captured}"
    );
    assert_eq!(
        fetch(mesh.node(0).command("curl"), server, 8080),
        MARKER,
        "the strict pod still drops plaintext from outside"
    );

    // The agent that was told enrolls nothing any more, so nothing is pinned again.
    let (status, body) = mesh.enroll(0, 0, "strict");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("being uninstalled"), "{body}");
    assert!(
        !pin_dirs[0].join("pods").exists(),
        "re-pinned after uninstall"
    );

    let again = uninstall(
        mesh.node(0).command(binary("ferrule-agent")),
        &["--config", mesh.agent_config(0).to_str().unwrap()],
        0,
    );
    assert_lines(
        &again,
        &[
            "agent: the running agent was already told",
            "capture: no pin directory",
        ],
    );
    assert_eq!(again.lines().last(), Some(NOTHING_LEFT), "{again}");
}

#[test]
fn uninstall_with_a_bad_config_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        "trust_domain: e.org\nbundle: /b\ncontrol_plane: 127.0.0.1:1\n\
         capture: {excluded_cidrs: [10.0.0.0/33]}\n",
    )
    .expect("writing the config");
    let out = Command::new(binary("ferrule-agent"))
        .args(["uninstall", "--config"])
        .arg(&config)
        .output()
        .expect("running ferrule-agent uninstall");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("capture.excluded_cidrs"), "{stderr}");
}

/// Whether a file in the CNI configuration directory names ferrule-cni (its entry or its
/// kubeconfig).
/// Whether a conflist in `conf_dir` runs ferrule-cni (the installer writes its kubeconfig there
/// first, so a file name is not enough).
fn chained(conf_dir: &Path) -> bool {
    std::fs::read_dir(conf_dir)
        .expect("the CNI configuration directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".conflist"))
        .any(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|conflist| conflist["plugins"].as_array().cloned())
                .is_some_and(|plugins| plugins.iter().any(|p| p["type"] == "ferrule-cni"))
        })
}

#[test]
fn the_pre_stop_hook_keeps_everything_during_an_upgrade_and_uninstalls_once_the_daemon_set_is_gone()
{
    let mut mesh = KubeMesh::new(1, 2);
    mesh.start_agent(0);
    let conf_dir = mesh.cni_conf_dir(0);
    let plugin = mesh.cni_bin_dir(0).join("ferrule-cni");
    mesh.wait_until(0, "the agent to chain ferrule-cni", || chained(&conf_dir));
    for pod in 0..2 {
        let add = mesh.cni_add(0, pod);
        assert!(add.success, "CNI ADD of pod {pod}: {add:?}");
    }
    let _server = marker_server(mesh.pod(0, 0), mesh.work.path(), 8080);
    let server = mesh.pod(0, 0).ip;
    assert_eq!(fetch(mesh.pod(0, 1).command("curl"), server, 8080), MARKER);
    assert_eq!(fetch(mesh.node(0).command("curl"), server, 8080), "");
    let pin_dir = mesh.cp.pin_dir(&mesh.node(0).name);
    let links = pinned_links(&pin_dir);
    let daemon_set = DaemonSet {
        metadata: ObjectMeta {
            name: Some(DAEMON_SET.into()),
            namespace: Some(SYSTEM_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        ..DaemonSet::default()
    };
    mesh.api.put(&daemon_set).expect("the agent's DaemonSet");
    let config = mesh.agent_config_path(0);
    let hook = || {
        let mut command = mesh.node(0).command(binary("ferrule-agent"));
        command
            .env("KUBECONFIG", mesh.kubeconfig())
            .env(ENV_DAEMONSET, DAEMON_SET)
            .env(ENV_POD_NAMESPACE, SYSTEM_NAMESPACE);
        command
    };
    let args = ["--if-removed", "--config", config.to_str().unwrap()];

    // An upgrade or restart: the DaemonSet is still there.
    let kept = uninstall(hook(), &args, 0);
    assert_eq!(
        kept.trim(),
        "DaemonSet ferrule-system/ferrule-agent still exists: an upgrade or a restart; nothing \
         uninstalled"
    );
    assert!(
        chained(&conf_dir) && plugin.exists(),
        "the plugin must stay"
    );
    assert_eq!(
        inspect::pinned_pod_links(&pin_dir),
        links,
        "capture must stay"
    );
    assert_eq!(fetch(mesh.node(0).command("curl"), server, 8080), "");

    // Ferrule removed: `kubectl delete` took the DaemonSet.
    mesh.api
        .delete::<DaemonSet>(SYSTEM_NAMESPACE, DAEMON_SET)
        .expect("deleting the DaemonSet");
    let removed = uninstall(hook(), &args, 0);
    assert_lines(
        &removed,
        &[
            "removal: DaemonSet ferrule-system/ferrule-agent is gone",
            "agent: told the running agent to stop enrolling pods; it released 2 pod(s)",
            "capture: detached the programs from every pod",
            "cni config: removed ferrule-cni from",
            "cni plugin: deleted",
            "cni kubeconfig: deleted",
        ],
    );
    assert_eq!(removed.lines().last(), Some(UNINSTALLED), "{removed}");
    assert_detached(&links);
    assert!(!pin_dir.exists(), "{} is left", pin_dir.display());
    assert!(!plugin.exists(), "{} is left", plugin.display());
    let kubeconfig = conf_dir.join("ferrule-cni.kubeconfig");
    assert!(!kubeconfig.exists(), "{} is left", kubeconfig.display());
    // The running agent's installer re-checks every second: it must not chain the plugin again.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !chained(&conf_dir),
        "ferrule-cni is back in the CNI configuration\nagent log:\n{}",
        mesh.agent(0).output()
    );
    assert_eq!(fetch(mesh.node(0).command("curl"), server, 8080), MARKER);
    assert_eq!(fetch(mesh.pod(0, 1).command("curl"), server, 8080), MARKER);

    let again = uninstall(hook(), &args, 0);
    assert_eq!(again.lines().last(), Some(NOTHING_LEFT), "{again}");
}
