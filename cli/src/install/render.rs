//! The output: a header that says what to do before and after applying, then every object as
//! one YAML document, each under a comment that says why it is as it is.

use std::collections::BTreeMap;

use ferrule_policy::crd::AuthorizationPolicy;
use k8s_openapi::api::core::v1::Namespace;
use kube::CustomResourceExt;
use serde::Serialize;

use super::agent::{self, CAPABILITIES, NOT_GRANTED, NOT_READY_TAINT};
use super::config::{self, AGENT_FILE, CONTROL_PLANE_FILE};
use super::control_plane;
use super::meta::{self, AGENT, CONTROL_PLANE};
use super::rbac::{self, AGENT_RULES, CONTROL_PLANE_RULES};
use super::values::Values;

const WIDTH: usize = 98;

/// The complete manifests as multi-document YAML.
pub fn manifests(values: &Values) -> String {
    let mut out = comment(&header(values));
    for (why, yaml) in documents(values) {
        out.push_str("---\n");
        out.push_str(&comment(&why));
        out.push_str(&yaml);
    }
    out
}

fn header(values: &Values) -> String {
    let ns = &values.namespace;
    format!(
        "Ferrule {version} on Kubernetes, rendered by `ferrule install kubernetes`; regenerate \
         with the same flags or values file rather than editing.\n\
         \n\
         Before applying:\n\
         1. Give every node the startup taint {NOT_READY_TAINT}=:NoSchedule (node pool \
         configuration, or kubelet --register-with-taints), so that no pod is scheduled onto a \
         node before its agent captures traffic there; the agent removes the taint once ready.\n\
         2. Put the CA of `ferrule ca init --trust-domain {td} --out ca` into the namespace:\n\
         \x20  kubectl create namespace {ns}\n\
         \x20  kubectl -n {ns} create secret generic {secret} --from-file=ca/chain.pem \
         --from-file=ca/bundle.pem --from-file=ca/issuing.key --from-file=ca/ca-crls.pem\n\
         \x20  kubectl -n {ns} create configmap {bundle} --from-file=ca/bundle.pem\n\
         \x20  Agents get only the trust bundle: a node can read every Secret its pods mount, \
         and the issuing key stays with the control plane.\n\
         Then: ferrule install kubernetes | kubectl apply -f -\n\
         Remove with the same flags: ferrule install kubernetes | kubectl delete -f - (each \
         agent's preStop hook takes capture and ferrule-cni off its node; pods keep running as \
         plain pods).\n\
         Mesh a namespace: kubectl label namespace NAME ferrule.io/mode=enabled (the default \
         mode, {mode}), or =strict / =permissive.\n",
        version = values.image.tag,
        td = values.trust_domain,
        secret = values.ca.secret,
        bundle = values.ca.trust_bundle_config_map,
        mode = values.default_mode.as_str(),
    )
}

fn documents(values: &Values) -> Vec<(String, String)> {
    let agent_config = config::agent_config(values);
    let control_plane_config = config::control_plane_config(values);
    vec![
        doc(
            "The install namespace. Pod Security level privileged: the agent needs host \
             networking, host paths and capabilities beyond `baseline` (the control plane \
             itself would pass `restricted`).",
            &namespace(values),
        ),
        doc(
            &format!(
                "AuthorizationPolicy: the document `ferrule policy apply` takes, as an object. \
                 The schema checks what OpenAPI can; the control plane reports the rest on \
                 status.conditions (type Accepted). Policies in {} apply mesh-wide.",
                values.namespace
            ),
            &AuthorizationPolicy::crd(),
        ),
        doc(
            "The agents' identity towards the API server, and what they attest as \
             (projected token, audience ferrule).",
            &rbac::service_account(AGENT, values),
        ),
        doc(
            "The control plane's identity towards the API server.",
            &rbac::service_account(CONTROL_PLANE, values),
        ),
        doc(
            &format!(
                "What the agents may do, and why:\n{}",
                rbac::explain(AGENT_RULES)
            ),
            &rbac::cluster_role(AGENT, AGENT_RULES, values),
        ),
        doc(
            &format!(
                "What the control plane may do, and why (nothing else: no Secrets, no \
                 ConfigMaps, no Nodes):\n{}",
                rbac::explain(CONTROL_PLANE_RULES)
            ),
            &rbac::cluster_role(CONTROL_PLANE, CONTROL_PLANE_RULES, values),
        ),
        doc("", &rbac::binding(AGENT, values)),
        doc("", &rbac::binding(CONTROL_PLANE, values)),
        doc(
            &format!(
                "What the agents may do in the install namespace, and why:\n- {}\n",
                rbac::AGENT_ROLE_WHY
            ),
            &rbac::agent_role(values),
        ),
        doc("", &rbac::role_binding(AGENT, values)),
        doc(
            "The agent's configuration (node-agent/src/config.rs).",
            &config::config_map(AGENT, AGENT_FILE, agent_config, values),
        ),
        doc(
            "The control plane's configuration (control-plane/src/config.rs).",
            &config::config_map(
                CONTROL_PLANE,
                CONTROL_PLANE_FILE,
                control_plane_config,
                values,
            ),
        ),
        doc(
            &format!(
                "grpc: agents and `ferrule` over mutual TLS ({}); public: HTTPS without client \
                 certificates (CRL, trust bundle); metrics: Prometheus.",
                meta::control_plane_address(values)
            ),
            &control_plane::service(values),
        ),
        doc(
            &format!(
                "One replica until the etcd store exists (issue \"HA control plane\"): each \
                 replica would have a store of its own, so updates recreate rather than roll. \
                 {store} Tolerates the startup taint: it is not meshed, and agents become ready \
                 only once it runs. Runs as nobody (the CA Secret's files are mode 0440 = 288, group \
                 nobody), read-only, with no capabilities. Ready once it serves the trust bundle \
                 on the public port.",
                store = control_plane::store_comment(values),
            ),
            &control_plane::deployment(values),
        ),
        doc(
            "maxUnavailable 1 while there is a single replica: a budget that allowed no \
             disruption would block every node drain.",
            &control_plane::disruption_budget(values),
        ),
        doc(&daemon_set_comment(), &agent::daemon_set(values)),
    ]
}

fn daemon_set_comment() -> String {
    let mut text = String::from(
        "One agent per node, in the node's network namespace (hostNetwork; ClusterFirstWithHostNet \
         to resolve the control plane's Service), in the system-node-critical priority class, \
         tolerating every taint (the startup taint too). It reaches the control plane by the \
         Service's cluster IP (FERRULE_CONTROL_PLANE from the service environment variables, \
         over the DNS name in its config): cluster DNS may itself wait for the startup taint to \
         go, while the cluster IP needs only kube-proxy. Not privileged; capabilities:\n",
    );
    for (capability, why) in CAPABILITIES {
        text.push_str(&format!("- {capability}: {why}\n"));
    }
    text.push_str("Not granted:\n");
    for (what, why) in NOT_GRANTED {
        text.push_str(&format!("- {what}: {why}\n"));
    }
    text.push_str(
        "Host paths: bpffs /sys/fs/bpf (pins outlive the agent; the host must mount bpffs \
         there, as systemd does); the cgroup2 root at /host/sys/fs/cgroup (read-only: attaching \
         needs only a descriptor); /proc at /host/proc (read-only: reconciling running pods); \
         /var/run/netns (the runtime's pod namespaces, HostToContainer); /opt/cni/bin and \
         /etc/cni/net.d (the agent installs ferrule-cni and chains it); /var/run/ferrule (the \
         socket the CNI plugin calls). The projected token (audience ferrule, 10 minutes) is \
         what the node attests with.\n\
         Ready (GET /ready on :15022) once the eBPF programs are loaded, the CNI plugin is \
         installed and the first configuration is applied; alive while that port accepts \
         connections. No container ports are declared: with hostNetwork each would also be a \
         hostPort, which keeps a second agent pod off the node.\n\
         Upgrades: maxSurge 1, maxUnavailable 0, so each node's new agent starts beside the old \
         one and takes over before the old one stops. Stopping: the preStop hook runs \
         `ferrule-agent uninstall --if-removed`, which uninstalls (detaches capture from every \
         pod, unchains and deletes ferrule-cni) only when Ferrule is being removed: this \
         DaemonSet or its namespace is gone or being deleted, or the API no longer accepts \
         the agent, as after `kubectl delete -f`. On an upgrade or restart it leaves capture \
         pinned for the next agent. terminationGracePeriodSeconds ",
    );
    text.push_str(&format!(
        "{}: the hook's API check (at most 10 s) and the agent's drain after SIGTERM (30 s by \
         default) fit in it.",
        agent::TERMINATION_GRACE_SECONDS
    ));
    text
}

fn namespace(values: &Values) -> Namespace {
    let mut metadata = meta::cluster(&values.namespace, "ferrule", values);
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "privileged".into(),
        );
    }
    Namespace {
        metadata,
        ..Namespace::default()
    }
}

fn doc<T: Serialize>(why: &str, object: &T) -> (String, String) {
    let yaml = serde_norway::to_string(object).expect("Kubernetes objects serialize to YAML");
    (why.to_owned(), yaml)
}

/// `text` as `# ` lines wrapped at WIDTH. Continuation lines of a `- ` or `1. ` item hang
/// under its text; indented lines (commands) are not wrapped, so they copy and paste whole.
fn comment(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with(' ') {
            out.push_str(format!("# {line}").trim_end());
            out.push('\n');
            continue;
        }
        let hang = match line.split_once(' ') {
            Some((marker, _)) if marker == "-" || marker.ends_with('.') => marker.len() + 1,
            _ => 0,
        };
        let mut current = String::from("#");
        let mut words = 0;
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            if words > 0 && current.len() + 1 + word.len() > WIDTH {
                out.push_str(&current);
                out.push('\n');
                current = format!("#{}", " ".repeat(hang));
                words = 0;
            }
            current.push(' ');
            current.push_str(word);
            words += 1;
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
}
