//! list (selectors, `limit` + `continue` pages from a consistent snapshot, `resourceVersion` +
//! `resourceVersionMatch`), watch, and deletecollection.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::objects::info;
use super::{Call, Reply};
use crate::history::HistoryError;
use crate::registry::ResourceInfo;
use crate::selectors::Selectors;
use crate::status::{Reason, Status};
use crate::store::{Key, Preconditions, StoreError};
use crate::watch::WatchRequest;

fn selectors(call: &Call<'_>) -> Result<Selectors, Status> {
    Selectors::parse(
        call.query.get("labelSelector"),
        call.query.get("fieldSelector"),
    )
    .map_err(|e| Status::new(Reason::BadRequest, e.to_string()))
}

fn parse_rv(text: &str) -> Result<u64, Status> {
    text.parse().map_err(|_| {
        Status::new(
            Reason::BadRequest,
            format!("invalid resource version {text:?}"),
        )
    })
}

fn collection(call: &Call<'_>) -> Result<ResourceInfo, Status> {
    let info = info(call)?;
    if call.target.subresource.is_some() {
        return Err(super::not_found_status());
    }
    Ok(info)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: u64,
    start: Key,
}

fn encode(token: &Continue) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(token).unwrap_or_default())
}

fn decode(text: &str) -> Result<Continue, Status> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| Status::new(Reason::BadRequest, "invalid continue token"))
}

pub(super) fn list(call: &Call<'_>) -> Result<Reply, Status> {
    let info = collection(call)?;
    let selectors = selectors(call)?;
    let limit = match call.query.get("limit") {
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| Status::new(Reason::BadRequest, "invalid limit"))?,
        None => 0,
    };
    let state = call.inner.state();
    let store = &state.store;
    let (rv, after) = match call.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let token = decode(token)?;
            if token.rv < store.oldest_rv() {
                return Err(Status::new(
                    Reason::Expired,
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            (token.rv, Some(token.start))
        }
        None => match (
            call.query
                .get("resourceVersion")
                .filter(|r| !r.is_empty() && *r != "0"),
            call.query.get("resourceVersionMatch"),
        ) {
            (None, _) => (store.rv(), None),
            (Some(text), Some("Exact")) => (parse_rv(text)?, None),
            (Some(text), _) => {
                let requested = parse_rv(text)?;
                if requested > store.rv() {
                    return Err(StoreError::TooLarge {
                        requested,
                        current: store.rv(),
                    }
                    .status());
                }
                (store.rv(), None)
            }
        },
    };
    let snapshot = store
        .snapshot_at(&call.target.gvr, rv)
        .map_err(|e| match e {
            StoreError::Expired(HistoryError::Expired { .. }) => Status::new(
                Reason::Expired,
                format!("The resourceVersion for the provided list is too old: {e}"),
            ),
            other => other.status(),
        })?;
    let namespace = call.target.namespace.as_str();
    let mut matching = snapshot
        .into_iter()
        .filter(|(key, _)| namespace.is_empty() || key.0 == namespace)
        .filter(|(key, _)| after.as_ref().is_none_or(|start| key > start))
        .filter(|(_, object)| selectors.matches(object));
    let mut items = Vec::new();
    let mut last = None;
    for (key, object) in matching.by_ref() {
        items.push(object);
        last = Some(key);
        if limit > 0 && items.len() == limit {
            break;
        }
    }
    let remaining = matching.count();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if remaining > 0
        && let Some(start) = last
    {
        metadata["continue"] = json!(encode(&Continue { rv, start }));
        metadata["remainingItemCount"] = json!(remaining);
    }
    Ok(Reply::Json(
        200,
        json!({
            "apiVersion": info.gvr.api_version(),
            "kind": format!("{}List", info.kind),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

pub(super) fn watch(call: &Call<'_>) -> Result<Reply, Status> {
    let info = collection(call)?;
    let from = match call.query.get("resourceVersion").unwrap_or("") {
        "" | "0" => None,
        text => Some(parse_rv(text)?),
    };
    let timeout = match call.query.get("timeoutSeconds") {
        Some(text) => {
            Some(Duration::from_secs(text.parse().map_err(|_| {
                Status::new(Reason::BadRequest, "invalid timeoutSeconds")
            })?))
        }
        None => None,
    };
    Ok(Reply::Watch(WatchRequest {
        gvr: info.gvr.clone(),
        kind: info.kind.clone(),
        namespace: Some(call.target.namespace.clone()).filter(|ns| !ns.is_empty()),
        selectors: selectors(call)?,
        from,
        bookmarks: call.query.flag("allowWatchBookmarks"),
        initial_events_end: call.query.flag("sendInitialEvents"),
        metadata_only: call.metadata_only,
        timeout,
    }))
}

pub(super) fn delete_collection(call: &Call<'_>) -> Result<Reply, Status> {
    let info = collection(call)?;
    let selectors = selectors(call)?;
    let namespace = call.target.namespace.as_str();
    let mut state = call.inner.state();
    let doomed: Vec<Key> = state
        .store
        .iter(&info.gvr)
        .filter(|(key, object)| {
            (namespace.is_empty() || key.0 == namespace) && selectors.matches(object)
        })
        .map(|(key, _)| key.clone())
        .collect();
    let mut items = Vec::new();
    for (ns, name) in doomed {
        if let Ok(gone) = state
            .store
            .delete(&info.gvr, &ns, &name, &Preconditions::default())
        {
            items.push(gone);
        }
    }
    let rv = state.store.rv().to_string();
    Ok(Reply::Json(
        200,
        json!({
            "apiVersion": info.gvr.api_version(),
            "kind": format!("{}List", info.kind),
            "metadata": {"resourceVersion": rv},
            "items": items,
        }),
    ))
}
