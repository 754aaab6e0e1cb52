//! Endpoints that compute rather than store: TokenRequest (`serviceaccounts/<name>/token`),
//! TokenReview, SelfSubjectReview, SelfSubjectAccessReview and SubjectAccessReview.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Call, Reply, Target};
use crate::auth::Attributes;
use crate::meta::timestamp;
use crate::status::{Reason, Status};
use crate::tokens::{MIN_EXPIRATION, Review, TokenError, TokenSpec};

const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    TokenRequest,
    TokenReview,
    SelfSubjectReview,
    SelfSubjectAccessReview,
    SubjectAccessReview,
}

fn endpoint(target: &Target) -> Option<Endpoint> {
    let gvr = &target.gvr;
    let sub = target.subresource.as_deref();
    match (gvr.group.as_str(), gvr.resource.as_str(), sub) {
        ("", "serviceaccounts", Some("token")) => Some(Endpoint::TokenRequest),
        (AUTHENTICATION, "tokenreviews", None) => Some(Endpoint::TokenReview),
        (AUTHENTICATION, "selfsubjectreviews", None) => Some(Endpoint::SelfSubjectReview),
        (AUTHORIZATION, "selfsubjectaccessreviews", None) => {
            Some(Endpoint::SelfSubjectAccessReview)
        }
        (AUTHORIZATION, "subjectaccessreviews", None) => Some(Endpoint::SubjectAccessReview),
        _ => None,
    }
}

pub(super) fn is_review(target: &Target) -> bool {
    endpoint(target).is_some()
}

pub(super) fn handle(call: &Call<'_>) -> Result<Reply, Status> {
    let mut body: Value = serde_json::from_slice(call.body).map_err(|e| {
        Status::new(
            Reason::BadRequest,
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    if !body.is_object() {
        return Err(Status::new(
            Reason::BadRequest,
            "the request body must be a JSON object",
        ));
    }
    let gvr = &call.target.gvr;
    let kind = match endpoint(&call.target) {
        Some(Endpoint::TokenRequest) => return token_request(call, body),
        Some(Endpoint::TokenReview) => {
            body["status"] = token_review(call, &body);
            "TokenReview"
        }
        Some(Endpoint::SelfSubjectReview) => {
            body["status"] = json!({"userInfo": call.user});
            "SelfSubjectReview"
        }
        Some(Endpoint::SelfSubjectAccessReview) => {
            body["status"] = access_review(call, &call.user.username, &body);
            "SelfSubjectAccessReview"
        }
        Some(Endpoint::SubjectAccessReview) => {
            let user = body
                .pointer("/spec/user")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            body["status"] = access_review(call, &user, &body);
            "SubjectAccessReview"
        }
        None => return Err(super::not_found_status()),
    };
    body["apiVersion"] = json!(gvr.api_version());
    body["kind"] = json!(kind);
    body["metadata"] = json!({"creationTimestamp": null});
    Ok(Reply::Json(201, body))
}

fn token_review(call: &Call<'_>, body: &Value) -> Value {
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let audiences = strings(body.pointer("/spec/audiences"));
    let state = call.inner.state();
    match state.auth.review(&state.store, token, &audiences) {
        Review::Authenticated { user, audiences } => {
            json!({"authenticated": true, "user": user, "audiences": audiences})
        }
        Review::Rejected(error) => json!({"authenticated": false, "user": {}, "error": error}),
    }
}

fn access_review(call: &Call<'_>, user: &str, body: &Value) -> Value {
    let Some(resource) = body.pointer("/spec/resourceAttributes") else {
        return json!({"allowed": true, "reason": "non-resource requests are allowed"});
    };
    let text = |field: &str| {
        resource
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let attributes = Attributes {
        verb: text("verb"),
        group: text("group"),
        resource: text("resource"),
        subresource: text("subresource"),
        namespace: text("namespace"),
        name: text("name"),
    };
    if call.inner.state().auth.allowed(user, &attributes) {
        json!({"allowed": true, "reason": "allowed: the kube double has no deny rule for this"})
    } else {
        json!({"allowed": false, "denied": true, "reason": "denied by a kube double deny rule"})
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn token_request(call: &Call<'_>, mut body: Value) -> Result<Reply, Status> {
    let invalid = |why: String| TokenError::Invalid(why).status();
    let seconds = match body.pointer("/spec/expirationSeconds") {
        None | Some(Value::Null) => 3600,
        Some(value) => value
            .as_u64()
            .ok_or_else(|| invalid("spec.expirationSeconds must be a number".into()))?,
    };
    let ttl = Duration::from_secs(seconds);
    if ttl < MIN_EXPIRATION {
        return Err(invalid(format!(
            "spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than {} seconds",
            MIN_EXPIRATION.as_secs()
        )));
    }
    let pod = match body.pointer("/spec/boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(reference) => {
            let text = |field: &str| {
                reference
                    .get(field)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            if text("kind") != Some("Pod") {
                return Err(invalid(format!(
                    "spec.boundObjectRef.kind: Unsupported value: {:?}: the kube double binds tokens to Pods only",
                    text("kind").unwrap_or("")
                )));
            }
            let name = text("name")
                .ok_or_else(|| invalid("spec.boundObjectRef.name: Required value".into()))?;
            Some((name.to_owned(), text("uid").map(str::to_owned)))
        }
    };
    let spec = TokenSpec {
        audiences: strings(body.pointer("/spec/audiences")),
        ttl,
        pod,
    };
    let name = call.target.name.as_deref().unwrap_or_default();
    let namespace = call.target.namespace.as_str();
    let issued = {
        let state = &mut *call.inner.state();
        let issued = state
            .auth
            .tokens
            .issue(&state.store, namespace, name, &spec)
            .map_err(|e| e.status())?;
        (issued, timestamp(state.store.clock.now()))
    };
    let (issued, now) = issued;
    body["apiVersion"] = json!("authentication.k8s.io/v1");
    body["kind"] = json!("TokenRequest");
    body["metadata"] = json!({"name": name, "namespace": namespace, "creationTimestamp": now});
    body["spec"]["audiences"] = json!(issued.audiences);
    body["spec"]["expirationSeconds"] = json!(seconds);
    body["status"] =
        json!({"token": issued.token, "expirationTimestamp": timestamp(issued.expires)});
    Ok(Reply::Json(201, body))
}
