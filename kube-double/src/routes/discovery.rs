//! Legacy discovery (`/api`, `/apis`, `/api/v1`, `/apis/<group>[/<version>]`) from the registry,
//! so `kube::Discovery` and "is the CRD installed?" checks work.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceInfo};

/// Groups served by the review endpoints, which store nothing and are not in the registry.
const REVIEW_RESOURCES: &[(&str, &str, &str)] = &[
    ("authentication.k8s.io", "tokenreviews", "TokenReview"),
    (
        "authentication.k8s.io",
        "selfsubjectreviews",
        "SelfSubjectReview",
    ),
    (
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
    ),
    (
        "authorization.k8s.io",
        "subjectaccessreviews",
        "SubjectAccessReview",
    ),
];

const STORED_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The discovery document at `path`, if `path` is a discovery path the registry knows.
pub(super) fn document(path: &str, registry: &Registry) -> Option<Value> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let groups = groups(registry);
    match segments.as_slice() {
        ["api"] => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        ["apis"] => {
            let groups: Vec<Value> = groups
                .iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, vs)| group(g, vs))
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["apis", name] => groups.get(*name).map(|versions| {
            let mut document = group(name, versions);
            document["kind"] = json!("APIGroup");
            document["apiVersion"] = json!("v1");
            document
        }),
        ["api", "v1"] => Some(resources(registry, "", "v1")),
        ["apis", name, version]
            if groups
                .get(*name)
                .is_some_and(|vs| vs.iter().any(|v| v == version)) =>
        {
            Some(resources(registry, name, version))
        }
        _ => None,
    }
}

/// Group name to its versions, newest registered first.
fn groups(registry: &Registry) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let registered = registry
        .iter()
        .map(|info| (info.gvr.group.clone(), info.gvr.version.clone()));
    let reviews = REVIEW_RESOURCES
        .iter()
        .map(|(g, _, _)| ((*g).to_owned(), "v1".to_owned()));
    for (group, version) in registered.chain(reviews) {
        let versions = groups.entry(group).or_default();
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    groups
}

fn group(name: &str, versions: &[String]) -> Value {
    let entry = |v: &String| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(entry).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(entry),
    })
}

fn resources(registry: &Registry, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for info in registry
        .iter()
        .filter(|i| i.gvr.group == group && i.gvr.version == version)
    {
        resources.push(resource(info, &info.gvr.resource, &STORED_VERBS));
        if info.status {
            resources.push(resource(
                info,
                &format!("{}/status", info.gvr.resource),
                &["get", "patch", "update"],
            ));
        }
        if group.is_empty() && info.gvr.resource == "serviceaccounts" {
            let mut token = resource(info, "serviceaccounts/token", &["create"]);
            token["kind"] = json!("TokenRequest");
            token["group"] = json!("authentication.k8s.io");
            token["version"] = json!("v1");
            resources.push(token);
        }
    }
    for (review_group, plural, kind) in REVIEW_RESOURCES {
        if *review_group == group && version == "v1" {
            resources.push(json!({"name": plural, "singularName": "", "namespaced": false, "kind": kind, "verbs": ["create"]}));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

fn resource(info: &ResourceInfo, name: &str, verbs: &[&str]) -> Value {
    json!({
        "name": name,
        "singularName": info.kind.to_lowercase(),
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": verbs,
    })
}
