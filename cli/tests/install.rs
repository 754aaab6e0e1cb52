//! `ferrule install kubernetes` as a user runs it: every printed document is a Kubernetes object
//! the API server knows field for field, the checked-in rendering is current, flags and values
//! change what they should, and bad values exit 2 naming the field.

#[path = "support/common.rs"]
mod common;

use std::path::Path;

use common::run;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const CHECKED_IN: &str = "deploy/kubernetes/ferrule.yaml";

fn render(flags: &[&str]) -> String {
    let mut args = vec!["install", "kubernetes"];
    args.extend(flags);
    run(&args).success().stdout
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|document| Value::deserialize(document).expect("every document is YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

/// The first place where `a` and `b` differ, as a JSON pointer.
fn difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|key| match (x.get(key), y.get(key)) {
                    (Some(x), Some(y)) => difference(x, y, format!("{at}/{key}")),
                    _ => Some(format!("{at}/{key}")),
                })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| difference(x, y, format!("{at}/{i}"))),
        _ => (a != b).then_some(at),
    }
}

/// Reads the document as `T` and back: a field `T` does not know is dropped, a mistyped one
/// fails, so equality means the object has no unknown fields.
fn round_trip<T: DeserializeOwned + Serialize>(document: &Value) -> T {
    let typed: T =
        serde_json::from_value(document.clone()).unwrap_or_else(|e| panic!("{e} in\n{document:#}"));
    let again = serde_json::to_value(&typed).unwrap();
    if let Some(at) = difference(document, &again, String::new()) {
        panic!("field {at} is unknown to the type or changed in the round trip:\n{document:#}");
    }
    typed
}

#[test]
fn the_round_trip_catches_unknown_and_misspelt_fields() {
    let good = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "x", "namespace": "y"},
    });
    round_trip::<ServiceAccount>(&good);
    let mut unknown = good.clone();
    unknown["metadata"]["nmespace"] = "y".into();
    let mut misspelt = good.clone();
    misspelt["automountServiceAccountTokens"] = true.into();
    for bad in [unknown, misspelt] {
        let caught = std::panic::catch_unwind(|| round_trip::<ServiceAccount>(&bad));
        assert!(caught.is_err(), "not caught: {bad}");
    }
}

/// Checks the document against the k8s-openapi type its apiVersion and kind name.
fn check_document(document: &Value) -> (String, String) {
    let text = |key: &str| document[key].as_str().unwrap_or_default().to_owned();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => drop(round_trip::<Namespace>(document)),
        ("v1", "ServiceAccount") => drop(round_trip::<ServiceAccount>(document)),
        ("v1", "ConfigMap") => drop(round_trip::<ConfigMap>(document)),
        ("v1", "Service") => drop(round_trip::<Service>(document)),
        ("apps/v1", "Deployment") => drop(round_trip::<Deployment>(document)),
        ("apps/v1", "DaemonSet") => drop(round_trip::<DaemonSet>(document)),
        ("policy/v1", "PodDisruptionBudget") => drop(round_trip::<PodDisruptionBudget>(document)),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            drop(round_trip::<ClusterRole>(document))
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            drop(round_trip::<ClusterRoleBinding>(document))
        }
        ("rbac.authorization.k8s.io/v1", "Role") => drop(round_trip::<Role>(document)),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            drop(round_trip::<RoleBinding>(document))
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            drop(round_trip::<CustomResourceDefinition>(document))
        }
        other => panic!("unexpected object {other:?}:\n{document:#}"),
    }
    (
        kind,
        document["metadata"]["name"].as_str().unwrap().to_owned(),
    )
}

/// The one document of this kind and name, as its type.
fn find<T: DeserializeOwned + Serialize>(docs: &[Value], kind: &str, name: &str) -> T {
    let document = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    round_trip(document)
}

#[test]
fn every_document_is_a_kubernetes_object_without_unknown_fields() {
    let docs = documents(&render(&[]));
    let objects: Vec<(String, String)> = docs.iter().map(check_document).collect();
    let expected = [
        ("Namespace", "ferrule-system"),
        (
            "CustomResourceDefinition",
            "authorizationpolicies.ferrule.dev",
        ),
        ("ServiceAccount", "ferrule-agent"),
        ("ServiceAccount", "ferrule-control-plane"),
        ("ClusterRole", "ferrule-agent"),
        ("ClusterRole", "ferrule-control-plane"),
        ("ClusterRoleBinding", "ferrule-agent"),
        ("ClusterRoleBinding", "ferrule-control-plane"),
        ("Role", "ferrule-agent"),
        ("RoleBinding", "ferrule-agent"),
        ("ConfigMap", "ferrule-agent"),
        ("ConfigMap", "ferrule-control-plane"),
        ("Service", "ferrule-control-plane"),
        ("Deployment", "ferrule-control-plane"),
        ("PodDisruptionBudget", "ferrule-control-plane"),
        ("DaemonSet", "ferrule-agent"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
    assert_eq!(objects, expected);
}

#[test]
fn the_checked_in_manifests_are_the_default_rendering() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CHECKED_IN);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let rendered = render(&[]);
    assert!(
        checked_in == rendered,
        "{CHECKED_IN} is not what `ferrule install kubernetes` prints now; regenerate it with\n  \
         cargo run -p ferrule-cli -- install kubernetes > {CHECKED_IN}\nand review the diff"
    );
}

fn write_values(dir: &Path, text: &str) -> String {
    let path = dir.join("values.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn bad_values_exit_2_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "image:\n  tagg: v1\n",
            "field image.tagg: unknown field `tagg`",
        ),
        (
            "default_mode: lenient\n",
            "field default_mode: unknown variant `lenient`",
        ),
        (
            "resources:\n  agent:\n    limits:\n      memory: 12Qi\n",
            "field resources.agent.limits.memory: \"12Qi\" is not a Kubernetes quantity",
        ),
        (
            "resources:\n  control_plane:\n    requests:\n      memory: 1Gi\n",
            "field resources.control_plane.requests.memory: the request exceeds the limit",
        ),
        (
            "resources:\n  agent:\n    requests:\n      gpu: 1\n",
            "field resources.agent.requests.gpu",
        ),
        (
            "namespace: Ferrule_System\n",
            "field namespace: \"Ferrule_System\" is not a DNS label",
        ),
        (
            "trust_domain: Example.ORG\n",
            "field trust_domain: \"Example.ORG\"",
        ),
        (
            "image:\n  tag: -rc1\n",
            "field image.tag: \"-rc1\" is not an image tag",
        ),
        (
            "ca:\n  signer: pkcs11\n",
            "field ca.signer: PKCS#11 signers cannot be installed",
        ),
        ("ca:\n  secret: Bad/Name\n", "field ca.secret"),
        ("namespace: [a\n", "YAML syntax error"),
    ];
    for (text, expected) in cases {
        let values = write_values(tmp.path(), text);
        let out = run(&["install", "kubernetes", "--values", &values]);
        assert_eq!(out.code, 2, "values\n{text}\ngave {out:#?}");
        assert!(
            out.stderr.contains(expected),
            "values\n{text}\nexpected stderr to contain {expected:?}, got {:?}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "printed manifests anyway: {out:#?}");
    }
    let out = run(&["install", "kubernetes", "--namespace", "Mesh"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("field namespace: \"Mesh\""), "{out:#?}");
    let out = run(&["install", "kubernetes", "--default-mode", "lenient"]);
    assert_eq!(out.code, 2, "{out:#?}");
}

#[test]
fn flags_change_the_namespace_everywhere_and_the_images() {
    let text = render(&[
        "--namespace",
        "mesh",
        "--image-registry",
        "localhost:5000",
        "--image-tag",
        "v9",
        "--trust-domain",
        "example.org",
    ]);
    assert!(
        !text.contains("ferrule-system"),
        "the default namespace is still in the output:\n{text}"
    );
    let docs = documents(&text);
    for doc in &docs {
        let (kind, name) = check_document(doc);
        let namespaced = !matches!(
            kind.as_str(),
            "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
        );
        let namespace = doc["metadata"]["namespace"].as_str();
        assert_eq!(namespace, namespaced.then_some("mesh"), "{kind} {name}");
    }
    let binding: ClusterRoleBinding = find(&docs, "ClusterRoleBinding", "ferrule-agent");
    assert_eq!(
        binding.subjects.unwrap()[0].namespace.as_deref(),
        Some("mesh")
    );
    let binding: RoleBinding = find(&docs, "RoleBinding", "ferrule-agent");
    assert_eq!(
        binding.subjects.unwrap()[0].namespace.as_deref(),
        Some("mesh")
    );

    let agent: DaemonSet = find(&docs, "DaemonSet", "ferrule-agent");
    let pod = agent.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("localhost:5000/ferrule/agent:v9")
    );
    let cp: Deployment = find(&docs, "Deployment", "ferrule-control-plane");
    let pod = cp.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("localhost:5000/ferrule/control-plane:v9")
    );

    let agent_config = config(&docs, "ferrule-agent", "agent.yaml");
    assert_eq!(
        agent_config["control_plane"],
        "ferrule-control-plane.mesh.svc:8443"
    );
    assert_eq!(agent_config["trust_domain"], "example.org");
    let cp_config = config(&docs, "ferrule-control-plane", "control-plane.yaml");
    assert_eq!(cp_config["kubernetes"]["namespace"], "mesh");
    assert_eq!(cp_config["trust_domain"], "example.org");

    let default = documents(&render(&[]));
    let agent: DaemonSet = find(&default, "DaemonSet", "ferrule-agent");
    let image = agent.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        image,
        Some(format!("ferrule/agent:{version}")),
        "default tag: the CLI's version"
    );
}

#[test]
fn a_values_file_merges_over_the_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let values = write_values(
        tmp.path(),
        "default_mode: permissive\nresources:\n  agent:\n    requests:\n      cpu: 250m\n    \
         limits:\n      memory: null\n",
    );
    let docs = documents(&render(&["--values", &values]));
    let agent: DaemonSet = find(&docs, "DaemonSet", "ferrule-agent");
    let resources = agent.spec.unwrap().template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let requests = resources.requests.unwrap();
    assert_eq!(requests["cpu"].0, "250m");
    assert_eq!(
        requests["memory"].0, "128Mi",
        "unset fields keep their defaults"
    );
    assert_eq!(resources.limits, None, "null unsets a default");
    let agent_config = config(&docs, "ferrule-agent", "agent.yaml");
    assert_eq!(agent_config["kubernetes"]["default_mode"], "permissive");
    // Flags win over the file.
    let docs = documents(&render(&["--values", &values, "--default-mode", "strict"]));
    let agent_config = config(&docs, "ferrule-agent", "agent.yaml");
    assert_eq!(agent_config["kubernetes"]["default_mode"], "strict");
}

/// The configuration file in a ConfigMap, parsed.
fn config(docs: &[Value], name: &str, file: &str) -> Value {
    let map: ConfigMap = find(docs, "ConfigMap", name);
    let text = &map.data.unwrap()[file];
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{name} {file}: {e}\n{text}"))
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn the_configs_carry_the_kubernetes_sections_of_the_plan() {
    let docs = documents(&render(&[]));
    let agent = config(&docs, "ferrule-agent", "agent.yaml");
    let kubernetes = &agent["kubernetes"];
    assert_eq!(
        keys(kubernetes),
        [
            "cgroup_root",
            "cni",
            "default_mode",
            "proc_root",
            "readiness_listen",
            "token_path"
        ]
    );
    assert_eq!(
        keys(&kubernetes["cni"]),
        ["bin_dir", "conf_dir", "plugin", "socket"]
    );
    assert_eq!(kubernetes["default_mode"], "strict");
    assert_eq!(kubernetes["cgroup_root"], "/host/sys/fs/cgroup");
    assert_eq!(kubernetes["proc_root"], "/host/proc");
    assert_eq!(kubernetes["token_path"], "/var/run/secrets/ferrule/token");
    assert_eq!(kubernetes["readiness_listen"], "0.0.0.0:15022");
    assert_eq!(kubernetes["cni"]["bin_dir"], "/host/opt/cni/bin");
    assert_eq!(kubernetes["cni"]["conf_dir"], "/host/etc/cni/net.d");
    assert_eq!(kubernetes["cni"]["plugin"], "/usr/local/bin/ferrule-cni");
    assert_eq!(kubernetes["cni"]["socket"], "/var/run/ferrule/agent.sock");
    assert_eq!(agent["enroll_socket"], "/var/run/ferrule/agent.sock");
    assert_eq!(
        agent["control_plane"],
        "ferrule-control-plane.ferrule-system.svc:8443"
    );
    assert!(
        agent.get("node_name").is_none(),
        "the node name comes from FERRULE_NODE_NAME"
    );

    let cp = config(&docs, "ferrule-control-plane", "control-plane.yaml");
    assert_eq!(
        cp["kubernetes"],
        serde_json::json!({
            "namespace": "ferrule-system",
            "agent_service_account": "ferrule-agent",
            "audience": "ferrule",
        })
    );
    assert_eq!(cp["public_listen"], "0.0.0.0:8444");
    assert_eq!(
        cp["ca"]["signer"]["file"]["key"],
        "/etc/ferrule/ca/issuing.key"
    );
}

type RuleTriple = (String, Vec<String>, Vec<String>);

fn rules(docs: &[Value], name: &str) -> Vec<RuleTriple> {
    let role: ClusterRole = find(docs, "ClusterRole", name);
    role.rules
        .unwrap()
        .into_iter()
        .map(|r| {
            assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
            (
                r.api_groups.unwrap().join(","),
                r.resources.unwrap(),
                r.verbs,
            )
        })
        .collect()
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> RuleTriple {
    let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
    (group.to_owned(), strings(resources), strings(verbs))
}

#[test]
fn rbac_grants_exactly_what_the_components_use() {
    let text = render(&[]);
    let docs = documents(&text);
    let read = ["get", "list", "watch"];
    assert_eq!(
        rules(&docs, "ferrule-agent"),
        [
            rule("", &["pods"], &read),
            rule("", &["namespaces"], &read),
            rule("", &["nodes"], &["get", "patch"]),
        ]
    );
    assert_eq!(
        rules(&docs, "ferrule-control-plane"),
        [
            rule("authentication.k8s.io", &["tokenreviews"], &["create"]),
            rule("", &["pods"], &read),
            rule("", &["namespaces"], &read),
            // Join checks that the attesting node's Node object exists.
            rule("", &["nodes"], &["get"]),
            rule(
                "ferrule.dev",
                &["authorizationpolicies"],
                &[
                    "get", "list", "watch", "create", "update", "patch", "delete"
                ]
            ),
            rule(
                "ferrule.dev",
                &["authorizationpolicies/status"],
                &["update", "patch"]
            ),
        ]
    );
    assert!(
        !text.contains("'*'") && !text.contains("\"*\""),
        "no wildcards"
    );
    assert!(
        text.contains("# - nodes (core): get, patch: remove the ferrule.io/agent-not-ready taint"),
        "each rule's reason is in the comment above its ClusterRole"
    );

    // In the install namespace, the agent may read its own DaemonSet and nothing else there.
    let role: Role = find(&docs, "Role", "ferrule-agent");
    let rule = &role.rules.unwrap()[0];
    assert_eq!(
        (
            rule.api_groups.clone().unwrap(),
            rule.resources.clone().unwrap(),
            rule.resource_names.clone().unwrap(),
            rule.verbs.clone()
        ),
        (
            vec!["apps".to_owned()],
            vec!["daemonsets".to_owned()],
            vec!["ferrule-agent".to_owned()],
            vec!["get".to_owned()]
        )
    );
    let binding: RoleBinding = find(&docs, "RoleBinding", "ferrule-agent");
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("Role", "ferrule-agent")
    );
    assert_eq!(binding.subjects.unwrap()[0].name, "ferrule-agent");
    assert!(
        text.contains("# - daemonsets (apps): get, of ferrule-agent only: the preStop hook"),
        "the Role's reason is in its comment"
    );
}

#[test]
fn the_agent_daemon_set_is_not_privileged_and_says_why_it_needs_each_capability() {
    let text = render(&[]);
    assert!(!text.contains("privileged: true"), "{text}");
    let daemon_set_comment = text
        .split("\n---\n")
        .find(|doc| doc.contains("kind: DaemonSet"))
        .unwrap();
    let docs = documents(&text);
    let agent: DaemonSet = find(&docs, "DaemonSet", "ferrule-agent");
    let spec = agent.spec.unwrap();
    let strategy = spec.update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    // The upgrade handover needs the new agent running beside the old one.
    let rolling = strategy.rolling_update.unwrap();
    assert_eq!(
        (rolling.max_surge, rolling.max_unavailable),
        (Some(IntOrString::Int(1)), Some(IntOrString::Int(0)))
    );
    let pod = spec.template.spec.unwrap();
    // Above the agent's 30 s drain plus the preStop hook's API check.
    assert_eq!(pod.termination_grace_period_seconds, Some(60));
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("ferrule-agent"));
    let tolerations = pod.tolerations.unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.is_none() && t.operator.as_deref() == Some("Exists")),
        "tolerates every taint"
    );
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("ferrule.io/agent-not-ready")),
        "names the startup taint"
    );

    let container = &pod.containers[0];
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.privileged, Some(false));
    let capabilities = security.capabilities.unwrap();
    assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]));
    let added = capabilities.add.unwrap();
    assert_eq!(added, ["BPF", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]);
    for capability in &added {
        assert!(
            daemon_set_comment.contains(&format!("# - {capability}: ")),
            "the DaemonSet's comment says why it needs {capability}:\n{daemon_set_comment}"
        );
    }

    let env = container.env.clone().unwrap();
    assert_eq!(env[0].name, "FERRULE_NODE_NAME");
    let field = env[0].value_from.clone().unwrap().field_ref.unwrap();
    assert_eq!(field.field_path, "spec.nodeName");
    // The Service's cluster IP and port, as the kubelet's service variables give them.
    assert_eq!(env[1].name, "FERRULE_CONTROL_PLANE");
    assert_eq!(
        env[1].value.as_deref(),
        Some("$(FERRULE_CONTROL_PLANE_SERVICE_HOST):$(FERRULE_CONTROL_PLANE_SERVICE_PORT_GRPC)")
    );
    // Removal or upgrade: the preStop hook asks the API about this DaemonSet.
    assert_eq!(env[2].name, "FERRULE_DAEMONSET");
    assert_eq!(env[2].value.as_deref(), Some("ferrule-agent"));
    assert_eq!(env[3].name, "FERRULE_POD_NAMESPACE");
    let field = env[3].value_from.clone().unwrap().field_ref.unwrap();
    assert_eq!(field.field_path, "metadata.namespace");
    let pre_stop = container.lifecycle.clone().unwrap().pre_stop.unwrap();
    assert_eq!(
        pre_stop.exec.unwrap().command.unwrap(),
        [
            "/usr/local/bin/ferrule-agent",
            "uninstall",
            "--if-removed",
            "--config",
            "/etc/ferrule/config/agent.yaml"
        ]
    );
    // With hostNetwork a declared port is a hostPort, which would keep the surge pod off the
    // node: the probes name the port by number instead.
    assert_eq!(container.ports, None);
    assert!(!text.contains("hostPort:"), "no hostPort anywhere");
    let ready = container.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(ready.path.as_deref(), Some("/ready"));
    assert_eq!(ready.port, IntOrString::Int(15022));
    let alive = container
        .liveness_probe
        .clone()
        .unwrap()
        .tcp_socket
        .unwrap();
    assert_eq!(alive.port, IntOrString::Int(15022));

    let volumes = pod.volumes.unwrap();
    let mounts = container.volume_mounts.clone().unwrap();
    let host = |host_path: &str| {
        let volume = volumes
            .iter()
            .find(|v| v.host_path.as_ref().is_some_and(|h| h.path == host_path))
            .unwrap_or_else(|| panic!("no hostPath {host_path}"));
        let mount = mounts.iter().find(|m| m.name == volume.name).unwrap();
        let propagation = mount.mount_propagation.as_deref().unwrap_or("None");
        (
            mount.mount_path.as_str(),
            mount.read_only == Some(true),
            propagation,
        )
    };
    assert_eq!(
        host("/sys/fs/bpf"),
        ("/sys/fs/bpf", false, "HostToContainer")
    );
    assert_eq!(
        host("/sys/fs/cgroup"),
        ("/host/sys/fs/cgroup", true, "None")
    );
    assert_eq!(host("/proc"), ("/host/proc", true, "None"));
    assert_eq!(
        host("/var/run/netns"),
        ("/var/run/netns", false, "HostToContainer")
    );
    assert_eq!(host("/opt/cni/bin"), ("/host/opt/cni/bin", false, "None"));
    assert_eq!(
        host("/etc/cni/net.d"),
        ("/host/etc/cni/net.d", false, "None")
    );
    assert_eq!(
        host("/var/run/ferrule"),
        ("/var/run/ferrule", false, "None")
    );
    assert!(
        volumes.iter().all(|v| v.secret.is_none()),
        "the agent mounts no Secret (the CA key stays with the control plane)"
    );

    let token = volumes.iter().find(|v| v.projected.is_some()).unwrap();
    let projection = token.projected.clone().unwrap().sources.unwrap()[0]
        .service_account_token
        .clone()
        .unwrap();
    assert_eq!(projection.audience.as_deref(), Some("ferrule"));
    assert_eq!(projection.expiration_seconds, Some(600));
    let mount = mounts.iter().find(|m| m.name == token.name).unwrap();
    assert_eq!(
        format!("{}/{}", mount.mount_path, projection.path),
        "/var/run/secrets/ferrule/token"
    );
}

#[test]
fn the_control_plane_is_one_unprivileged_replica_ready_when_it_serves_the_bundle() {
    let docs = documents(&render(&[]));
    let cp: Deployment = find(&docs, "Deployment", "ferrule-control-plane");
    let spec = cp.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("ferrule-control-plane")
    );
    let tolerations = pod.tolerations.clone().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("ferrule.io/agent-not-ready")),
        "the control plane must run before any agent is ready"
    );
    let container = &pod.containers[0];
    let ready = container.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(ready.scheme.as_deref(), Some("HTTPS"));
    assert_eq!(ready.path.as_deref(), Some("/bundle.pem"));
    let ports = container.ports.clone().unwrap();
    let public = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("public"))
        .unwrap();
    assert_eq!(ready.port, IntOrString::String("public".into()));
    assert_eq!(public.container_port, 8444);
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.capabilities.unwrap().add, None);
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    let secret = pod
        .volumes
        .unwrap()
        .into_iter()
        .find_map(|v| v.secret)
        .unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("ferrule-ca"));

    let service: Service = find(&docs, "Service", "ferrule-control-plane");
    let ports: Vec<(String, i32)> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port))
        .collect();
    let expected = [("grpc", 8443), ("public", 8444), ("metrics", 9464)];
    let expected: Vec<(String, i32)> = expected.iter().map(|(n, p)| (n.to_string(), *p)).collect();
    assert_eq!(ports, expected);
    let budget: PodDisruptionBudget = find(&docs, "PodDisruptionBudget", "ferrule-control-plane");
    assert_eq!(
        budget.spec.unwrap().max_unavailable,
        Some(IntOrString::Int(1))
    );
}

#[test]
fn the_store_is_an_empty_dir_unless_a_claim_is_named() {
    let store = |flags: &[&str]| {
        let docs = documents(&render(flags));
        let cp: Deployment = find(&docs, "Deployment", "ferrule-control-plane");
        let volumes = cp.spec.unwrap().template.spec.unwrap().volumes.unwrap();
        volumes.into_iter().find(|v| v.name == "data").unwrap()
    };
    let data = store(&[]);
    assert!(data.empty_dir.is_some() && data.persistent_volume_claim.is_none());
    let tmp = tempfile::tempdir().unwrap();
    let values = write_values(
        tmp.path(),
        "store:\n  persistent_volume_claim: ferrule-store\n",
    );
    let data = store(&["--values", &values]);
    assert!(data.empty_dir.is_none());
    assert_eq!(
        data.persistent_volume_claim.unwrap().claim_name,
        "ferrule-store"
    );
}
