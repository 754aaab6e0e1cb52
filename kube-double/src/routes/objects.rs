//! get, create, update, patch and delete of one object (or its status subresource).

use serde_json::Value;

use super::{Call, Reply, not_found_status};
use crate::patch::{self, PatchType};
use crate::registry::ResourceInfo;
use crate::status::{Reason, Status};
use crate::store::{ApplyOptions, Origin, Part, Preconditions};

/// The resource's registry entry, checked against the target's scope.
pub(super) fn info(call: &Call<'_>) -> Result<ResourceInfo, Status> {
    let info = call
        .inner
        .state()
        .store
        .info(&call.target.gvr)
        .map_err(|e| e.status())?
        .clone();
    if info.namespaced && call.target.namespace.is_empty() && call.target.name.is_some() {
        return Err(not_found_status());
    }
    Ok(info)
}

/// The named object and which part of it the call addresses.
fn object<'a>(call: &'a Call<'_>) -> Result<(ResourceInfo, &'a str, Part), Status> {
    let info = info(call)?;
    let name = call.target.name.as_deref().ok_or_else(not_found_status)?;
    let part = match call.target.subresource.as_deref() {
        None => Part::Main,
        Some("status") if info.status => Part::Status,
        Some(_) => return Err(not_found_status()),
    };
    Ok((info, name, part))
}

fn json_body(call: &Call<'_>) -> Result<Value, Status> {
    serde_json::from_slice(call.body).map_err(|e| {
        Status::new(
            Reason::BadRequest,
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

fn refuse_dry_run(call: &Call<'_>) -> Result<(), Status> {
    match call.query.get("dryRun") {
        Some(_) => Err(Status::new(
            Reason::BadRequest,
            "the kube double does not support dryRun",
        )),
        None => Ok(()),
    }
}

pub(super) fn get(call: &Call<'_>) -> Result<Reply, Status> {
    let (_, name, _) = object(call)?;
    let state = call.inner.state();
    let object = state
        .store
        .get(&call.target.gvr, &call.target.namespace, name)
        .map_err(|e| e.status())?;
    Ok(Reply::Json(200, object.clone()))
}

pub(super) fn create(call: &Call<'_>) -> Result<Reply, Status> {
    let info = info(call)?;
    if call.target.name.is_some() || (info.namespaced && call.target.namespace.is_empty()) {
        return Err(Status::new(
            Reason::MethodNotAllowed,
            "create needs a namespaced collection URL",
        ));
    }
    refuse_dry_run(call)?;
    let body = json_body(call)?;
    let mut state = call.inner.state();
    let created = state
        .store
        .create(&call.target.gvr, &call.target.namespace, body, Origin::Api)
        .map_err(|e| e.status())?;
    Ok(Reply::Json(201, created))
}

pub(super) fn update(call: &Call<'_>) -> Result<Reply, Status> {
    let (_, name, part) = object(call)?;
    refuse_dry_run(call)?;
    let body = json_body(call)?;
    let mut state = call.inner.state();
    let updated = state
        .store
        .replace(
            &call.target.gvr,
            &call.target.namespace,
            name,
            body,
            part,
            Origin::Api,
        )
        .map_err(|e| e.status())?;
    Ok(Reply::Json(200, updated))
}

pub(super) fn patch(call: &Call<'_>) -> Result<Reply, Status> {
    let (_, name, part) = object(call)?;
    refuse_dry_run(call)?;
    let kind = PatchType::from_content_type(call.content_type).map_err(|e| e.status())?;
    let (gvr, namespace) = (&call.target.gvr, call.target.namespace.as_str());
    if kind == PatchType::Apply {
        let manager = call
            .query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                Status::new(
                    Reason::BadRequest,
                    "PATCH, fieldManager is required for apply requests",
                )
            })?;
        let options = ApplyOptions {
            manager: manager.to_owned(),
            force: call.query.flag("force"),
        };
        let body = json_body(call)?;
        let mut state = call.inner.state();
        let applied = state
            .store
            .apply(gvr, namespace, name, body, part, &options)
            .map_err(|e| e.status())?;
        return Ok(Reply::Json(200, applied));
    }
    let mut state = call.inner.state();
    let mut object = state
        .store
        .get(gvr, namespace, name)
        .map_err(|e| e.status())?
        .clone();
    patch::patch(kind, &mut object, call.body).map_err(|e| e.status())?;
    let patched = state
        .store
        .replace(gvr, namespace, name, object, part, Origin::Api)
        .map_err(|e| e.status())?;
    Ok(Reply::Json(200, patched))
}

pub(super) fn delete(call: &Call<'_>) -> Result<Reply, Status> {
    let (_, name, part) = object(call)?;
    if part != Part::Main {
        return Err(Status::new(
            Reason::MethodNotAllowed,
            "the status subresource cannot be deleted",
        ));
    }
    refuse_dry_run(call)?;
    let preconditions = if call.body.iter().all(u8::is_ascii_whitespace) {
        Preconditions::default()
    } else {
        let options = json_body(call)?;
        let text = |field: &str| {
            options
                .pointer(&format!("/preconditions/{field}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Preconditions {
            uid: text("uid"),
            resource_version: text("resourceVersion"),
        }
    };
    let mut state = call.inner.state();
    let deleted = state
        .store
        .delete(
            &call.target.gvr,
            &call.target.namespace,
            name,
            &preconditions,
        )
        .map_err(|e| e.status())?;
    Ok(Reply::Json(200, deleted))
}
