//! The agent DaemonSet: one agent per node, in the node's network namespace, with the
//! capabilities it needs named one by one (not `privileged`), and the host paths of the plan.

use std::collections::BTreeMap;

use ferrule_config::kubernetes::{ENV_DAEMONSET, ENV_NODE_NAME, ENV_POD_NAMESPACE};
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, ExecAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, ProjectedVolumeSource, SeccompProfile,
    SecurityContext, ServiceAccountTokenProjection, Toleration, Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{self, AGENT_FILE, BUNDLE_DIR, SOCKET_DIR, TOKEN_DIR, TOKEN_FILE};
use super::meta::{self, AGENT, CONFIG_DIR, READINESS_PORT};
use super::pod::{self, Access, host_path, mount};
use super::values::Values;

/// The node taint the agent removes once capture works on the node.
pub use ferrule_config::kubernetes::NOT_READY_TAINT;

const BINARY: &str = "/usr/local/bin/ferrule-agent";
/// Above what stopping may take: the preStop hook (at most 10 s of API retries, then the
/// uninstall when Ferrule is removed) and the agent's drain after SIGTERM (drain_timeout, 30 s
/// by default) share this budget; the kubelet kills whatever still runs at its end.
pub const TERMINATION_GRACE_SECONDS: i64 = 60;

/// The control plane's Service by cluster IP (the service environment variables the kubelet
/// sets), overriding the DNS name in the config file: cluster DNS may itself be waiting behind
/// the startup taint, while the cluster IP needs only kube-proxy.
const CONTROL_PLANE_BY_IP: &str =
    "$(FERRULE_CONTROL_PLANE_SERVICE_HOST):$(FERRULE_CONTROL_PLANE_SERVICE_PORT_GRPC)";

/// The capabilities the agent gets, and what for. Everything else is dropped.
pub const CAPABILITIES: &[(&str, &str)] = &[
    (
        "BPF",
        "bpf(2): create the maps and load the capture programs",
    ),
    (
        "NET_ADMIN",
        "attach the networking programs (cgroup connect4/connect6, sock_ops, cgroup_skb) to the \
         pods' cgroups",
    ),
    (
        "SYS_ADMIN",
        "setns(2) into each pod's network namespace, where the agent opens the pod's proxy \
         sockets (no other capability allows it)",
    ),
    (
        "SYS_PTRACE",
        "open /host/proc/<pid>/ns/net of pods that ran before the agent started \
         (reconciliation): the kernel checks ptrace access on namespace links of other users' \
         processes",
    ),
];

/// Capabilities one might expect, and why the agent does without them.
pub const NOT_GRANTED: &[(&str, &str)] = &[
    (
        "privileged",
        "would grant every capability and device and lift seccomp and AppArmor",
    ),
    (
        "PERFMON",
        "the capture uses no tracing programs or helpers (no kprobes, no bpf_probe_read)",
    ),
    (
        "SYS_RESOURCE",
        "kernels from 5.11 charge BPF memory to the cgroup, not RLIMIT_MEMLOCK; on older \
         kernels add it",
    ),
    (
        "DAC_OVERRIDE",
        "the agent runs as uid 0 and writes only root-owned host paths (CNI directories, \
         bpffs, /var/run/ferrule)",
    ),
    (
        "allowPrivilegeEscalation=false",
        "the API refuses it together with SYS_ADMIN, so it is left unset",
    ),
];

pub fn daemon_set(values: &Values) -> DaemonSet {
    let config_text = config::agent_config(values);
    DaemonSet {
        metadata: meta::namespaced(AGENT, AGENT, values),
        spec: Some(DaemonSetSpec {
            selector: meta::selector(AGENT),
            // The new agent starts beside the old one and takes over before the old one stops,
            // so a node is never without an agent during an upgrade.
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(meta::labels(AGENT, values)),
                    annotations: Some(BTreeMap::from([(
                        "ferrule.io/config-sha256".to_owned(),
                        config::checksum(&config_text),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(values)),
            },
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    }
}

fn pod_spec(values: &Values) -> PodSpec {
    PodSpec {
        service_account_name: Some(AGENT.into()),
        host_network: Some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        priority_class_name: Some("system-node-critical".into()),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        tolerations: Some(vec![
            // Every taint, so that every node gets an agent ...
            Toleration {
                operator: Some("Exists".into()),
                ..Toleration::default()
            },
            // ... including, named for the reader, the one the agent itself removes.
            Toleration {
                key: Some(NOT_READY_TAINT.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Toleration::default()
            },
        ]),
        containers: vec![container(values)],
        volumes: Some(volumes(values)),
        ..PodSpec::default()
    }
}

fn container(values: &Values) -> Container {
    Container {
        name: "agent".into(),
        image: Some(values.image.reference("agent")),
        image_pull_policy: Some(pod::pull_policy(values.image.pull_policy)),
        command: Some(vec![BINARY.into()]),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{AGENT_FILE}"),
            "--log-json".into(),
        ]),
        lifecycle: Some(pre_stop_uninstall()),
        env: Some(vec![
            field_env(ENV_NODE_NAME, "spec.nodeName"),
            EnvVar {
                name: "FERRULE_CONTROL_PLANE".into(),
                value: Some(CONTROL_PLANE_BY_IP.into()),
                ..EnvVar::default()
            },
            // What the preStop hook reads to tell a removal from an upgrade.
            EnvVar {
                name: ENV_DAEMONSET.into(),
                value: Some(AGENT.into()),
                ..EnvVar::default()
            },
            field_env(ENV_POD_NAMESPACE, "metadata.namespace"),
        ]),
        // No declared ports: with hostNetwork a containerPort is also a hostPort, and the
        // scheduler would never place the surge pod beside the old one. Probes name the number.
        ports: None,
        readiness_probe: Some(pod::http_probe("HTTP", ready_port(), "/ready", 5)),
        liveness_probe: Some(pod::tcp_liveness(ready_port())),
        resources: Some(pod::resources(&values.resources.agent)),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            run_as_user: Some(0),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(CAPABILITIES.iter().map(|(c, _)| c.to_string()).collect()),
                drop: Some(vec!["ALL".into()]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("bpffs", "/sys/fs/bpf", Access::HostToContainer),
            mount("cgroup", "/host/sys/fs/cgroup", Access::ReadOnly),
            mount("proc", "/host/proc", Access::ReadOnly),
            mount("netns", "/var/run/netns", Access::HostToContainer),
            mount("cni-bin", "/host/opt/cni/bin", Access::ReadWrite),
            mount("cni-conf", "/host/etc/cni/net.d", Access::ReadWrite),
            mount("run", SOCKET_DIR, Access::ReadWrite),
            mount("config", CONFIG_DIR, Access::ReadOnly),
            mount("bundle", BUNDLE_DIR, Access::ReadOnly),
            mount("token", TOKEN_DIR, Access::ReadOnly),
        ]),
        ..Container::default()
    }
}

/// Every stop of the agent's pod runs it; it uninstalls only when the DaemonSet is gone or
/// being deleted (Ferrule removed), never on an upgrade or restart.
fn pre_stop_uninstall() -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    BINARY.into(),
                    "uninstall".into(),
                    "--if-removed".into(),
                    "--config".into(),
                    format!("{CONFIG_DIR}/{AGENT_FILE}"),
                ]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

fn ready_port() -> IntOrString {
    IntOrString::Int(READINESS_PORT)
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn volumes(values: &Values) -> Vec<Volume> {
    vec![
        host_path("bpffs", "/sys/fs/bpf", false),
        host_path("cgroup", "/sys/fs/cgroup", false),
        host_path("proc", "/proc", false),
        host_path("netns", "/var/run/netns", true),
        host_path("cni-bin", "/opt/cni/bin", true),
        host_path("cni-conf", "/etc/cni/net.d", true),
        host_path("run", SOCKET_DIR, true),
        pod::config_map_volume("config", AGENT),
        pod::config_map_volume("bundle", &values.ca.trust_bundle_config_map),
        Volume {
            name: "token".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some("ferrule".into()),
                        expiration_seconds: Some(600),
                        path: TOKEN_FILE.into(),
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}
