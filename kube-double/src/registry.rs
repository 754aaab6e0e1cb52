//! Which resources the double serves: kind, scope and whether writes to `.status` go through a
//! status subresource. Built-in resources plus whatever CustomResourceDefinitions register.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Group, version and plural resource name: what a URL path addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Gvr {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: resource.to_owned(),
        }
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn is_crd(&self) -> bool {
        self.group == CRD_GROUP && self.resource == "customresourcedefinitions"
    }

    pub(crate) fn is_namespaces(&self) -> bool {
        self.group.is_empty() && self.resource == "namespaces"
    }
}

impl fmt::Display for Gvr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.resource)
    }
}

/// What the double knows about one served resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    pub gvr: Gvr,
    pub kind: String,
    pub namespaced: bool,
    /// Has a `/status` subresource: main-resource writes keep the stored `.status`.
    pub status: bool,
}

impl ResourceInfo {
    pub fn new(gvr: Gvr, kind: &str, namespaced: bool, status: bool) -> Self {
        ResourceInfo {
            gvr,
            kind: kind.to_owned(),
            namespaced,
            status,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the CustomResourceDefinition has no {0}")]
    MissingField(&'static str),
    #[error("spec.scope must be Namespaced or Cluster, not {0:?}")]
    BadScope(String),
}

pub(crate) const CRD_GROUP: &str = "apiextensions.k8s.io";

/// (group, version, plural, kind, namespaced, status subresource)
const BUILTIN: &[(&str, &str, &str, &str, bool, bool)] = &[
    ("", "v1", "pods", "Pod", true, true),
    ("", "v1", "namespaces", "Namespace", false, true),
    ("", "v1", "nodes", "Node", false, true),
    ("", "v1", "serviceaccounts", "ServiceAccount", true, false),
    ("", "v1", "services", "Service", true, true),
    ("", "v1", "endpoints", "Endpoints", true, false),
    ("", "v1", "configmaps", "ConfigMap", true, false),
    ("", "v1", "secrets", "Secret", true, false),
    ("", "v1", "events", "Event", true, false),
    ("apps", "v1", "daemonsets", "DaemonSet", true, true),
    ("apps", "v1", "deployments", "Deployment", true, true),
    (
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        false,
    ),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, false),
    ("events.k8s.io", "v1", "events", "Event", true, false),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        false,
    ),
    (
        CRD_GROUP,
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
    ),
    (
        "ferrule.dev",
        "v1alpha1",
        "authorizationpolicies",
        "AuthorizationPolicy",
        true,
        true,
    ),
];

#[derive(Clone, Debug)]
pub(crate) struct Registry {
    resources: BTreeMap<Gvr, ResourceInfo>,
}

impl Registry {
    pub fn builtin() -> Self {
        let resources = BUILTIN
            .iter()
            .map(|&(group, version, plural, kind, namespaced, status)| {
                let gvr = Gvr::new(group, version, plural);
                (
                    gvr.clone(),
                    ResourceInfo::new(gvr, kind, namespaced, status),
                )
            })
            .collect();
        Registry { resources }
    }

    pub fn iter(&self) -> impl Iterator<Item = &ResourceInfo> {
        self.resources.values()
    }

    pub fn get(&self, gvr: &Gvr) -> Option<&ResourceInfo> {
        self.resources.get(gvr)
    }

    pub fn is_namespaced(&self, group: &str, version: &str, plural: &str) -> bool {
        self.get(&Gvr::new(group, version, plural))
            .is_some_and(|info| info.namespaced)
    }

    pub fn insert(&mut self, info: ResourceInfo) {
        self.resources.insert(info.gvr.clone(), info);
    }

    pub fn remove(&mut self, gvr: &Gvr) -> Option<ResourceInfo> {
        self.resources.remove(gvr)
    }

    /// Every resource (all served versions) a CustomResourceDefinition object defines.
    pub fn from_crd(crd: &Value) -> Result<Vec<ResourceInfo>, RegistryError> {
        let spec = crd.get("spec").ok_or(RegistryError::MissingField("spec"))?;
        let text = |pointer: &str, field: &'static str| {
            spec.pointer(pointer)
                .and_then(Value::as_str)
                .ok_or(RegistryError::MissingField(field))
        };
        let group = text("/group", "spec.group")?;
        let plural = text("/names/plural", "spec.names.plural")?;
        let kind = text("/names/kind", "spec.names.kind")?;
        let namespaced = match text("/scope", "spec.scope")? {
            "Namespaced" => true,
            "Cluster" => false,
            other => return Err(RegistryError::BadScope(other.to_owned())),
        };
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .ok_or(RegistryError::MissingField("spec.versions"))?;
        let mut infos = Vec::new();
        for version in versions {
            let name = version
                .get("name")
                .and_then(Value::as_str)
                .ok_or(RegistryError::MissingField("spec.versions[].name"))?;
            if version.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let status = version.pointer("/subresources/status").is_some();
            let gvr = Gvr::new(group, name, plural);
            infos.push(ResourceInfo::new(gvr, kind, namespaced, status));
        }
        Ok(infos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_registers_every_served_version_with_scope_and_status() {
        let crd = json!({"spec": {
        "group": "example.com", "scope": "Cluster",
        "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [
            {"name": "v1", "served": true, "subresources": {"status": {}}},
            {"name": "v1beta1", "served": true},
            {"name": "v0", "served": false},
        ]}});
        let infos = Registry::from_crd(&crd).unwrap();
        assert_eq!(
            infos,
            vec![
                ResourceInfo::new(
                    Gvr::new("example.com", "v1", "widgets"),
                    "Widget",
                    false,
                    true
                ),
                ResourceInfo::new(
                    Gvr::new("example.com", "v1beta1", "widgets"),
                    "Widget",
                    false,
                    false
                ),
            ]
        );
        let bad = json!({"spec": {"group": "g", "scope": "Galaxy", "names": {"plural": "p", "kind": "K"}, "versions": []}});
        assert!(
            matches!(Registry::from_crd(&bad), Err(RegistryError::BadScope(s)) if s == "Galaxy")
        );
    }
}
