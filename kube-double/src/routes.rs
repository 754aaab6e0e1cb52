//! From an HTTP request to an answer: authentication, the URL path to a resource target, the
//! verb, deny rules, request counting, then the object handlers (`routes/objects.rs`), lists
//! (`routes/list.rs`) and the review and token endpoints (`routes/reviews.rs`).

mod discovery;
mod list;
mod objects;
mod reviews;

use std::sync::Arc;

use http::{Method, request::Parts};
use serde_json::{Value, json};

use crate::auth::{Attributes, User};
use crate::double::Inner;
use crate::meta::partial_response;
use crate::registry::{Gvr, Registry};
use crate::status::{Reason, Status};
use crate::watch::WatchRequest;

/// What the server sends back.
pub(crate) enum Reply {
    Json(u16, Value),
    Text(u16, &'static str),
    Watch(WatchRequest),
}

impl From<Status> for Reply {
    fn from(status: Status) -> Self {
        Reply::Json(status.code(), status.to_json())
    }
}

/// What a URL path names below `/api/v1` or `/apis/<group>/<version>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub gvr: Gvr,
    /// Empty for cluster-scoped objects and for lists across all namespaces.
    pub namespace: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Decoded query parameters.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }
}

/// One authenticated API call.
pub(crate) struct Call<'a> {
    pub inner: &'a Arc<Inner>,
    pub method: &'a Method,
    pub target: Target,
    pub query: Query,
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub user: User,
    /// `Accept: ...;as=PartialObjectMetadata;...`: answer with metadata only.
    pub metadata_only: bool,
}

pub(crate) fn handle(inner: &Arc<Inner>, parts: &Parts, body: &[u8]) -> Reply {
    let path = parts.uri.path();
    match path {
        "/healthz" | "/livez" | "/readyz" => return Reply::Text(200, "ok"),
        "/version" => return Reply::Json(200, version()),
        _ => {}
    }
    let header = |name: http::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let user = {
        let state = inner.state();
        match state
            .auth
            .authenticate(&state.store, header(http::header::AUTHORIZATION))
        {
            Ok(user) => user,
            Err(e) => return e.status().into(),
        }
    };
    let target = {
        let state = inner.state();
        match parse_path(path, state.store.registry()) {
            Some(target) => target,
            None if parts.method == Method::GET => {
                return match discovery::document(path, state.store.registry()) {
                    Some(document) => Reply::Json(200, document),
                    None => not_found(),
                };
            }
            None => return not_found(),
        }
    };
    let call = Call {
        inner,
        method: &parts.method,
        target,
        query: Query::parse(parts.uri.query()),
        content_type: header(http::header::CONTENT_TYPE).unwrap_or(""),
        body,
        user,
        metadata_only: header(http::header::ACCEPT)
            .is_some_and(|a| a.contains("as=PartialObjectMetadata")),
    };
    let Some(verb) = verb(&call) else {
        return Status::new(
            Reason::MethodNotAllowed,
            format!("{} is not supported here", call.method),
        )
        .into();
    };
    let attributes = Attributes {
        verb: verb.to_owned(),
        group: call.target.gvr.group.clone(),
        resource: call.target.gvr.resource.clone(),
        subresource: call.target.subresource.clone().unwrap_or_default(),
        namespace: call.target.namespace.clone(),
        name: call.target.name.clone().unwrap_or_default(),
    };
    inner.count(verb, &attributes.resource_path());
    if let Err(e) = inner.state().auth.authorize(&call.user, &attributes) {
        return e.status().into();
    }
    let result = match verb {
        "create" if reviews::is_review(&call.target) => reviews::handle(&call),
        _ if reviews::is_review(&call.target) => Err(not_found_status()),
        "get" => objects::get(&call),
        "list" => list::list(&call),
        "watch" => list::watch(&call),
        "create" => objects::create(&call),
        "update" => objects::update(&call),
        "patch" => objects::patch(&call),
        "delete" => objects::delete(&call),
        "deletecollection" => list::delete_collection(&call),
        _ => Err(not_found_status()),
    };
    match result {
        Ok(Reply::Json(code, document)) if call.metadata_only => {
            Reply::Json(code, partial_response(document))
        }
        Ok(reply) => reply,
        Err(status) => status.into(),
    }
}

fn verb(call: &Call<'_>) -> Option<&'static str> {
    let named = call.target.name.is_some();
    Some(match (call.method.clone(), named) {
        (Method::GET, true) => "get",
        (Method::GET, false) if call.query.flag("watch") => "watch",
        (Method::GET, false) => "list",
        (Method::POST, _) => "create",
        (Method::PUT, true) => "update",
        (Method::PATCH, true) => "patch",
        (Method::DELETE, true) => "delete",
        (Method::DELETE, false) => "deletecollection",
        _ => return None,
    })
}

/// `/api/v1/...` or `/apis/<group>/<version>/...`: `[namespaces/<ns>/]<plural>[/<name>[/<sub>]]`.
/// A namespace's own subresources (`/api/v1/namespaces/<name>/status`) are told apart from
/// collections inside it by the registry.
pub(crate) fn parse_path(path: &str, registry: &Registry) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let owned = |s: Option<&&str>| s.map(|s| (*s).to_owned());
    let (namespace, resource, tail) = match rest {
        ["namespaces", namespace, resource, tail @ ..]
            if registry.is_namespaced(group, version, resource) =>
        {
            (*namespace, *resource, tail)
        }
        [resource, tail @ ..] => ("", *resource, tail),
        [] => return None,
    };
    if tail.len() > 2 || rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(Target {
        gvr: Gvr::new(group, version, resource),
        namespace: namespace.to_owned(),
        name: owned(tail.first()),
        subresource: owned(tail.get(1)),
    })
}

fn not_found_status() -> Status {
    Status::new(
        Reason::NotFound,
        "the server could not find the requested resource",
    )
}

fn not_found() -> Reply {
    not_found_status().into()
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-ferrule-kube-double",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "", "compiler": "rustc", "platform": "linux/amd64",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Option<(String, String, Option<String>, Option<String>)> {
        parse_path(path, &Registry::builtin())
            .map(|t| (t.gvr.to_string(), t.namespace, t.name, t.subresource))
    }

    #[test]
    fn paths_name_collections_objects_and_subresources() {
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            target("/api/v1/pods"),
            Some(("v1/pods".into(), "".into(), None, None))
        );
        assert_eq!(
            target("/api/v1/namespaces/shop/pods/web/status"),
            Some(("v1/pods".into(), "shop".into(), s("web"), s("status")))
        );
        assert_eq!(
            target("/api/v1/namespaces/shop"),
            Some(("v1/namespaces".into(), "".into(), s("shop"), None))
        );
        assert_eq!(
            target("/api/v1/namespaces/shop/status"),
            Some(("v1/namespaces".into(), "".into(), s("shop"), s("status")))
        );
        assert_eq!(
            target("/apis/ferrule.dev/v1alpha1/namespaces/shop/authorizationpolicies"),
            Some((
                "ferrule.dev/v1alpha1/authorizationpolicies".into(),
                "shop".into(),
                None,
                None
            ))
        );
        assert_eq!(
            target("/apis/authentication.k8s.io/v1/tokenreviews"),
            Some((
                "authentication.k8s.io/v1/tokenreviews".into(),
                "".into(),
                None,
                None
            ))
        );
        assert_eq!(target("/api/v1/nodes/a/b/c"), None);
        assert_eq!(target("/metrics"), None);
    }
}
