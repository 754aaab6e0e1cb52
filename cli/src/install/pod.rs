//! Pieces both pod templates use: resources, volumes, probes and the container basics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, HTTPGetAction, HostPathVolumeSource, Probe, ResourceRequirements,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::values::{PullPolicy, Requirements, ResourceList};

pub fn resources(requirements: &Requirements) -> ResourceRequirements {
    let list = |list: &ResourceList| {
        let map: BTreeMap<String, Quantity> = list
            .entries()
            .map(|(name, _, value)| (name.to_owned(), Quantity(value.to_owned())))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    ResourceRequirements {
        requests: list(&requirements.requests),
        limits: list(&requirements.limits),
        ..ResourceRequirements::default()
    }
}

pub fn pull_policy(policy: PullPolicy) -> String {
    match policy {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
    .to_owned()
}

/// A host directory; `create` makes it if the node lacks it (CNI directories on a fresh node).
pub fn host_path(name: &str, path: &str, create: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_owned(),
            type_: Some(
                if create {
                    "DirectoryOrCreate"
                } else {
                    "Directory"
                }
                .to_owned(),
            ),
        }),
        ..Volume::default()
    }
}

pub fn config_map_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// How a volume is mounted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
    /// Read-write, and mounts the host makes later show up in the container.
    HostToContainer,
}

pub fn mount(name: &str, path: &str, access: Access) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: (access == Access::ReadOnly).then_some(true),
        mount_propagation: (access == Access::HostToContainer)
            .then(|| "HostToContainer".to_owned()),
        ..VolumeMount::default()
    }
}

/// A named container port, for probes.
pub fn named(port: &str) -> IntOrString {
    IntOrString::String(port.to_owned())
}

/// An HTTP(S) GET probe on a port: a named container port, or a number (for the agent, which
/// declares no ports: see `agent`).
pub fn http_probe(scheme: &str, port: IntOrString, path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            scheme: Some(scheme.to_owned()),
            port,
            path: Some(path.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// A liveness probe: the listener accepts connections, so the process and its runtime run.
/// (Readiness also waits for the control plane and the cluster, which are no reason to restart.)
pub fn tcp_liveness(port: IntOrString) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port,
            ..TCPSocketAction::default()
        }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(10),
        failure_threshold: Some(6),
        ..Probe::default()
    }
}
