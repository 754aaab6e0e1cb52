//! Kubernetes mode end to end: the API server double, the control plane and the agents in
//! Kubernetes mode, the test as kubelet (Pod objects, the installed CNI plugin, apps in pods).

use ferrule_config::kubernetes::NOT_READY_TAINT;
use std::time::Duration;

use ferrule_tests::kube_mesh::{KubeMesh, NAMESPACE, TRUST_DOMAIN};
use k8s_openapi::api::core::v1::Node;

/// A one-file HTTP server in a pod.
fn http_server(mesh: &KubeMesh, node: usize, pod: usize, port: u16) -> ferrule_tests::Child {
    let dir = mesh.work.path().join(format!("www-{node}-{pod}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from the mesh\n").unwrap();
    ferrule_tests::apps::http_server(mesh.pod(node, pod), &dir, port)
}

fn identity(mesh: &KubeMesh, node: usize, pod: usize) -> String {
    let sa = &mesh.pod(node, pod).service_account;
    format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{sa}")
}

fn tainted(mesh: &KubeMesh, node: usize) -> bool {
    let object: Node = mesh
        .api
        .get("", &mesh.node(node).name)
        .expect("node object");
    let taints = object.spec.and_then(|s| s.taints).unwrap_or_default();
    taints.iter().any(|t| t.key == NOT_READY_TAINT)
}

#[test]
fn pods_are_enrolled_from_the_api_and_the_cni_plugin_with_their_service_account_identities() {
    let mut mesh = KubeMesh::new(2, 2);
    // Running before its node's agent starts: reconciliation must find it.
    let _server = http_server(&mesh, 0, 1, 8080);
    mesh.start_agent(0);
    mesh.start_agent(1);

    for node in 0..2 {
        mesh.wait_until(node, "the agent to clear its node's startup taint", || {
            !tainted(&mesh, node)
        });
    }
    let running = mesh.pod(0, 1).uid.clone();
    mesh.wait_until(
        0,
        "the running pod to be enrolled by reconciliation",
        || mesh.enrolled_id(0, &running).is_some(),
    );
    assert_eq!(mesh.enrolled_id(0, &running), Some(identity(&mesh, 0, 1)));

    // A new sandbox: the runtime runs the chain, ferrule-cni enrolls it and passes prevResult on.
    let add = mesh.cni_add(1, 0);
    assert!(
        add.success,
        "CNI ADD failed: {add:?}\nagent log:\n{}",
        mesh.agent(1).output()
    );
    let client_ip = mesh.pod(1, 0).ip.to_string();
    assert!(
        add.json()["ips"][0]["address"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&client_ip),
        "ADD must print the prevResult: {}",
        add.stdout
    );
    let client = mesh.pod(1, 0).uid.clone();
    assert_eq!(mesh.enrolled_id(1, &client), Some(identity(&mesh, 1, 0)));

    // Opted out by annotation: ADD passes prevResult through and the agent leaves it alone.
    let opted_out = mesh.pod(1, 1).uid.clone();
    mesh.annotate_pod(1, 1, "ferrule.io/mode", "disabled");
    let passed = mesh.cni_add(1, 1);
    assert!(
        passed.success,
        "ADD of an opted-out pod must pass: {passed:?}"
    );
    assert!(
        passed.stdout.contains(&mesh.pod(1, 1).ip.to_string()),
        "{passed:?}"
    );
    assert_eq!(
        mesh.enrolled_id(1, &opted_out),
        None,
        "an opted-out pod is not enrolled"
    );

    // Pod to pod across nodes: both strict, so this only works through the mesh.
    let url = format!("http://{}:8080/hello.txt", mesh.pod(0, 1).ip);
    let reply = mesh
        .pod(1, 0)
        .command("curl")
        .args(["-sS", "--max-time", "10", &url])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reply.stdout).trim(),
        "hello from the mesh",
        "curl: {}\nagent 1:\n{}\nagent 0:\n{}",
        String::from_utf8_lossy(&reply.stderr),
        mesh.agent(1).output(),
        mesh.agent(0).output()
    );
    // One line per connection, written when it closes.
    let access_log = mesh
        .work
        .path()
        .join(format!("agent-{}/access.log", mesh.node(0).name));
    let (src, dst) = (identity(&mesh, 1, 0), identity(&mesh, 0, 1));
    mesh.wait_until(
        0,
        "the destination's access log to name both identities",
        || {
            let log = std::fs::read_to_string(&access_log).unwrap_or_default();
            log.lines().any(|l| l.contains(&src) && l.contains(&dst))
        },
    );

    // The API is the authority: deleting the Pod object unenrolls it.
    mesh.delete_pod_object(0, 1);
    mesh.wait_until(0, "the deleted pod to be unenrolled", || {
        mesh.enrolled_id(0, &running).is_none()
    });

    // Deleted while its agent was down: the restarted agent does not serve it again.
    mesh.stop_agent(1);
    mesh.delete_pod_object(1, 0);
    mesh.start_agent(1);
    mesh.wait_until(1, "the restarted agent to be ready", || {
        mesh.agent(1).output().contains("Kubernetes pods listed")
    });
    mesh.wait_until(
        1,
        "the pod deleted during the restart to stay unenrolled",
        || mesh.enrolled_id(1, &client).is_none(),
    );
    let remembered = mesh.agent(1).output();
    assert!(
        remembered.contains(&client),
        "the restarted agent should have dealt with the pod it remembered:\n{remembered}"
    );
}

#[test]
fn cni_add_fails_closed_while_the_agent_is_down_and_succeeds_once_it_is_back() {
    let mut mesh = KubeMesh::new(1, 1);
    mesh.start_agent(0);
    mesh.wait_until(0, "the agent to be ready", || !tainted(&mesh, 0));
    mesh.stop_agent(0);

    let refused = mesh.cni_add(0, 0);
    assert!(
        !refused.success,
        "ADD must fail while the agent is down: {refused:?}"
    );
    let error = refused.json();
    assert_eq!(error["code"], 11, "try again later: {error}");
    assert!(
        error["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("must be meshed"),
        "the error says why: {error}"
    );
    let uid = mesh.pod(0, 0).uid.clone();

    mesh.start_agent(0);
    let mut last = None;
    mesh.wait_until(0, "a retried ADD to succeed", || {
        let outcome = mesh.cni_add(0, 0);
        let ok = outcome.success;
        last = Some(outcome);
        ok
    });
    assert_eq!(
        mesh.enrolled_id(0, &uid),
        Some(identity(&mesh, 0, 0)),
        "{last:?}"
    );
}

#[test]
fn a_rolling_update_hands_the_node_over_with_its_pods_and_readiness_socket() {
    let mut mesh = KubeMesh::new(2, 1);
    let _server = http_server(&mesh, 0, 0, 8080);
    mesh.start_agent(0);
    mesh.start_agent(1);
    for node in 0..2 {
        mesh.wait_until(node, "the agent to be ready", || !tainted(&mesh, node));
    }
    let add = mesh.cni_add(1, 0);
    assert!(add.success, "CNI ADD failed: {add:?}");
    let server = mesh.pod(0, 0).uid.clone();
    mesh.wait_until(0, "the running pod to be enrolled", || {
        mesh.enrolled_id(0, &server).is_some()
    });
    let readiness = mesh
        .agent(0)
        .logged_address("readiness probe listening", Duration::from_secs(10));
    let fetch = |mesh: &KubeMesh| {
        let url = format!("http://{}:8080/hello.txt", mesh.pod(0, 0).ip);
        let out = mesh
            .pod(1, 0)
            .command("curl")
            .args(["-sS", "--max-time", "10", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(fetch(&mesh), "hello from the mesh");

    let mut old = mesh.replace_agent(0);
    assert_eq!(
        old.wait_exit(Duration::from_secs(40)),
        Some(0),
        "{}",
        old.output()
    );
    let new = mesh.agent(0).output();
    assert!(new.contains("pod taken over"), "{new}");
    assert_eq!(mesh.enrolled_id(0, &server), Some(identity(&mesh, 0, 0)));
    // The kubelet probes the same socket, now answered by the new agent alone.
    assert_eq!(
        mesh.agent(0)
            .logged_address("readiness probe listening", Duration::from_secs(10)),
        readiness
    );
    let probe = mesh
        .node(0)
        .command("curl")
        .args(["-sS", "--fail", "--max-time", "5"])
        .arg(format!("http://{readiness}/ready"))
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    assert!(!tainted(&mesh, 0));
    assert_eq!(fetch(&mesh), "hello from the mesh");
}

#[test]
fn the_rendered_agent_config_is_valid_for_the_agent() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/ferrule.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/kubernetes/ferrule.yaml");
    let agent = config_map_entry(&text, "agent.yaml");
    let env = ferrule_node_agent::config::MapEnv::from_pairs(&[
        ("FERRULE_NODE_NAME", "node-a"),
        // What the DaemonSet sets from the Service's environment variables.
        ("FERRULE_CONTROL_PLANE", "10.96.0.10:8443"),
    ]);
    let config = ferrule_node_agent::config::Config::from_yaml(&agent, "agent.yaml", &env)
        .unwrap_or_else(|e| panic!("the rendered agent config does not load: {e}"));
    let k8s = config
        .kubernetes
        .expect("the rendered agent runs in Kubernetes mode");
    assert_eq!(
        k8s.token_path.to_str(),
        Some("/var/run/secrets/ferrule/token")
    );
    assert!(k8s.cni.is_some(), "the agent installs the CNI plugin");
}

/// The text of `key` in the ConfigMap documents of a rendered manifest.
fn config_map_entry(manifest: &str, key: &str) -> String {
    for doc in manifest.split("\n---\n") {
        let Ok(value) = serde_norway::from_str::<serde_json::Value>(doc) else {
            continue;
        };
        if value["kind"] == "ConfigMap"
            && let Some(text) = value["data"][key].as_str()
        {
            return text.to_owned();
        }
    }
    panic!("no ConfigMap with {key}")
}

/// curl from pod `from` to pod `to`'s HTTP server; whether the page came back.
fn fetch(mesh: &KubeMesh, from: (usize, usize), to: (usize, usize)) -> bool {
    let url = format!("http://{}:8080/hello.txt", mesh.pod(to.0, to.1).ip);
    let reply = mesh
        .pod(from.0, from.1)
        .command("curl")
        .args(["-sS", "--max-time", "5", &url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&reply.stdout).trim() == "hello from the mesh"
}

/// Two Pod objects with one address (a stale object whose IP was reused, or a forged status):
/// agents resolve the address to neither and refuse connections to it, instead of pinning one
/// of the two identities by chance; once one goes away, traffic flows again.
#[test]
fn an_address_two_pods_claim_is_refused_until_one_of_them_goes_away() {
    let mut mesh = KubeMesh::new(2, 1);
    let _server = http_server(&mesh, 0, 0, 8080);
    mesh.start_agent(0);
    mesh.start_agent(1);
    mesh.wait_until(1, "the mesh to carry pod to pod traffic", || {
        fetch(&mesh, (1, 0), (0, 0))
    });

    mesh.put_pod_sharing_address(0, 0, "impostor", "impostor");
    mesh.wait_until(1, "the client's agent to refuse the shared address", || {
        !fetch(&mesh, (1, 0), (0, 0))
            && mesh
                .agent(1)
                .output()
                .contains("is claimed by several workloads")
    });

    mesh.delete_pod_named("impostor");
    mesh.wait_until(
        1,
        "traffic to flow again once the address is unique",
        || fetch(&mesh, (1, 0), (0, 0)),
    );
}
