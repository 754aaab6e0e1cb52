//! The control plane: a Deployment of one replica (until the etcd store exists, each replica
//! would have a store of its own), its Service and a PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Toleration, Volume,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::agent::NOT_READY_TAINT;
use super::config::{self, CA_DIR, CONTROL_PLANE_FILE, DATA_DIR};
use super::meta::{self, CONFIG_DIR, CONTROL_PLANE, GRPC_PORT, METRICS_PORT, PUBLIC_PORT};
use super::pod::{self, Access, mount, named};
use super::values::Values;

/// `nobody` in the image: the control plane needs no privilege at all.
const NOBODY: i64 = 65534;

const PORTS: [(&str, i32); 3] = [
    ("grpc", GRPC_PORT),
    ("public", PUBLIC_PORT),
    ("metrics", METRICS_PORT),
];

pub fn deployment(values: &Values) -> Deployment {
    let config_text = config::control_plane_config(values);
    Deployment {
        metadata: meta::namespaced(CONTROL_PLANE, CONTROL_PLANE, values),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // Never two at once: each would have a store of its own.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..DeploymentStrategy::default()
            }),
            selector: meta::selector(CONTROL_PLANE),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(meta::labels(CONTROL_PLANE, values)),
                    annotations: Some(BTreeMap::from([(
                        "ferrule.io/config-sha256".to_owned(),
                        config::checksum(&config_text),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(values)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn pod_spec(values: &Values) -> PodSpec {
    PodSpec {
        service_account_name: Some(CONTROL_PLANE.into()),
        priority_class_name: Some("system-cluster-critical".into()),
        // Not meshed, and no agent becomes ready (and untaints its node) before it runs.
        tolerations: Some(vec![Toleration {
            key: Some(NOT_READY_TAINT.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }]),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NOBODY),
            run_as_group: Some(NOBODY),
            fs_group: Some(NOBODY),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![container(values)],
        volumes: Some(vec![
            pod::config_map_volume("config", CONTROL_PLANE),
            Volume {
                name: "ca".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(values.ca.secret.clone()),
                    // Group-readable for fsGroup `nobody`, nothing for others.
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            store_volume(values),
        ]),
        ..PodSpec::default()
    }
}

/// The store: the operator's PersistentVolumeClaim if named, else an emptyDir.
fn store_volume(values: &Values) -> Volume {
    let claim = &values.store.persistent_volume_claim;
    Volume {
        name: "data".into(),
        empty_dir: claim.is_empty().then(EmptyDirVolumeSource::default),
        persistent_volume_claim: (!claim.is_empty()).then(|| PersistentVolumeClaimVolumeSource {
            claim_name: claim.clone(),
            ..PersistentVolumeClaimVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// What the Deployment's comment says about the store.
pub fn store_comment(values: &Values) -> String {
    match values.store.persistent_volume_claim.as_str() {
        "" => "The store is an emptyDir: policies, nodes and workloads come back from the API \
               after a restart, but revocations and the record of issued certificates do not; \
               set store.persistent_volume_claim to keep them."
            .to_owned(),
        claim => format!("The store is on the PersistentVolumeClaim {claim}."),
    }
}

fn container(values: &Values) -> Container {
    Container {
        name: "control-plane".into(),
        image: Some(values.image.reference("control-plane")),
        image_pull_policy: Some(pod::pull_policy(values.image.pull_policy)),
        command: Some(vec!["/usr/local/bin/ferrule-control-plane".into()]),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONTROL_PLANE_FILE}"),
            "--log-json".into(),
        ]),
        ports: Some(
            PORTS
                .iter()
                .map(|&(name, port)| ContainerPort {
                    name: Some(name.into()),
                    container_port: port,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        // Served once the CA is loaded and the listeners are up.
        readiness_probe: Some(pod::http_probe("HTTPS", named("public"), "/bundle.pem", 10)),
        liveness_probe: Some(pod::tcp_liveness(named("grpc"))),
        resources: Some(pod::resources(&values.resources.control_plane)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, Access::ReadOnly),
            mount("ca", CA_DIR, Access::ReadOnly),
            mount("data", DATA_DIR, Access::ReadWrite),
        ]),
        ..Container::default()
    }
}

pub fn service(values: &Values) -> Service {
    Service {
        metadata: meta::namespaced(CONTROL_PLANE, CONTROL_PLANE, values),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(meta::selector_labels(CONTROL_PLANE)),
            ports: Some(
                PORTS
                    .iter()
                    .map(|&(name, port)| ServicePort {
                        name: Some(name.into()),
                        port,
                        target_port: Some(IntOrString::String(name.into())),
                        protocol: Some("TCP".into()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn disruption_budget(values: &Values) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta::namespaced(CONTROL_PLANE, CONTROL_PLANE, values),
        spec: Some(PodDisruptionBudgetSpec {
            // One replica: a budget that allowed no disruption would block every node drain.
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(meta::selector(CONTROL_PLANE)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
