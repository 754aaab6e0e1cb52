//! Names, labels and metadata the manifests share.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::values::Values;

pub const AGENT: &str = "ferrule-agent";
pub const CONTROL_PLANE: &str = "ferrule-control-plane";

/// Ports of the control plane (container and Service).
pub const GRPC_PORT: i32 = 8443;
pub const PUBLIC_PORT: i32 = 8444;
pub const METRICS_PORT: i32 = 9464;
/// The agent's readiness endpoint, in the node's network namespace.
pub const READINESS_PORT: i32 = 15022;

/// Mounted into the containers (ConfigMaps named after their component).
pub const CONFIG_DIR: &str = "/etc/ferrule/config";

/// `app.kubernetes.io/name` (the component's name) and `part-of`: stable, so they select.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), name.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "ferrule".to_owned()),
    ])
}

/// The selector labels plus the version, which changes with every upgrade.
pub fn labels(name: &str, values: &Values) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert(
        "app.kubernetes.io/version".to_owned(),
        values.image.tag.clone(),
    );
    labels
}

pub fn selector(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(name)),
        ..LabelSelector::default()
    }
}

/// Metadata of an object in the install namespace.
pub fn namespaced(name: &str, component: &str, values: &Values) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(values.namespace.clone()),
        labels: Some(labels(component, values)),
        ..ObjectMeta::default()
    }
}

/// Metadata of a cluster-scoped object.
pub fn cluster(name: &str, component: &str, values: &Values) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(labels(component, values)),
        ..ObjectMeta::default()
    }
}

/// `ferrule-control-plane.<namespace>.svc:8443`, how agents reach the control plane.
pub fn control_plane_address(values: &Values) -> String {
    format!("{CONTROL_PLANE}.{}.svc:{GRPC_PORT}", values.namespace)
}
