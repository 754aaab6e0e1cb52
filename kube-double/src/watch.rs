//! Watch streams: newline-delimited `{"type","object"}` events after a resourceVersion (or the
//! current state as synthetic ADDED events first), filtered by namespace and selectors the way
//! the API server's watch cache does (an object leaving the selection is DELETED, one entering it
//! ADDED), with periodic BOOKMARKs, `timeoutSeconds`, and a 410 ERROR event once the position has
//! expired.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, interval_at, sleep_until};

use crate::double::{Inner, stopped};
use crate::history::{Event, EventType, HistoryError};
use crate::meta::partial_object;
use crate::registry::Gvr;
use crate::selectors::Selectors;
use crate::status::{Reason, Status};

/// A watch as the query string asked for it.
#[derive(Clone, Debug)]
pub(crate) struct WatchRequest {
    pub gvr: Gvr,
    pub kind: String,
    /// `None`: every namespace (or a cluster-scoped resource).
    pub namespace: Option<String>,
    pub selectors: Selectors,
    /// `None` (resourceVersion "" or "0"): start with the current state as ADDED events.
    pub from: Option<u64>,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: mark the end of the initial events with an annotated BOOKMARK.
    pub initial_events_end: bool,
    pub timeout: Option<Duration>,
    /// The client asked for `PartialObjectMetadata` (kube's `metadata_watcher`).
    pub metadata_only: bool,
}

impl WatchRequest {
    fn visible(&self, object: &Value) -> bool {
        let namespace_matches = self.namespace.as_deref().is_none_or(|ns| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(ns)
        });
        namespace_matches && self.selectors.matches(object)
    }

    /// What this watcher sees of one write, if anything.
    fn translate(&self, event: &Event) -> Option<Bytes> {
        if event.gvr != self.gvr {
            return None;
        }
        let was = event.previous.as_ref().is_some_and(|p| self.visible(p));
        let is = self.visible(&event.object);
        match (event.kind, was, is) {
            (EventType::Added, _, true) => Some(self.event(EventType::Added, &event.object)),
            (EventType::Modified, true, true) => {
                Some(self.event(EventType::Modified, &event.object))
            }
            (EventType::Modified, false, true) => Some(self.event(EventType::Added, &event.object)),
            (EventType::Modified, true, false) => {
                let mut last = event.previous.clone().unwrap_or(Value::Null);
                if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("resourceVersion".into(), json!(event.rv.to_string()));
                }
                Some(self.event(EventType::Deleted, &last))
            }
            (EventType::Deleted, true, _) => Some(self.event(EventType::Deleted, &event.object)),
            _ => None,
        }
    }

    fn event(&self, kind: EventType, object: &Value) -> Bytes {
        if self.metadata_only {
            line(kind.as_str(), &partial_object(object))
        } else {
            line(kind.as_str(), object)
        }
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object =
            json!({"kind": self.kind, "apiVersion": self.gvr.api_version(), "metadata": metadata});
        line("BOOKMARK", &object)
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn expired(error: &HistoryError) -> Bytes {
    line(
        "ERROR",
        &Status::new(Reason::Expired, error.to_string()).to_json(),
    )
}

/// Starts the watch; its events arrive on the returned channel until it ends (timeout,
/// expiry, shutdown, or the client going away).
pub(crate) fn start(inner: Arc<Inner>, request: WatchRequest) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(run(inner, request, tx));
    rx
}

async fn run(inner: Arc<Inner>, request: WatchRequest, tx: mpsc::Sender<Bytes>) {
    let mut changes;
    let mut shutdown = inner.shutdown.subscribe();
    let generation = *shutdown.borrow();
    let (mut cursor, initial) = {
        let state = inner.state();
        changes = state.store.subscribe();
        match request.from {
            Some(rv) => (rv, Vec::new()),
            None => {
                let lines: Vec<Bytes> = state
                    .store
                    .iter(&request.gvr)
                    .filter(|(_, object)| request.visible(object))
                    .map(|(_, object)| request.event(EventType::Added, object))
                    .collect();
                (state.store.rv(), lines)
            }
        }
    };
    for event in initial {
        if tx.send(event).await.is_err() {
            return;
        }
    }
    if request.initial_events_end
        && request.from.is_none()
        && tx.send(request.bookmark(cursor, true)).await.is_err()
    {
        return;
    }
    let deadline = request.timeout.map(|t| Instant::now() + t);
    let period = inner.config.bookmark_interval;
    let mut bookmarks = interval_at(Instant::now() + period, period);
    loop {
        changes.borrow_and_update();
        let batch = {
            let state = inner.state();
            match state.store.history_after(cursor) {
                Ok(events) => {
                    let lines: Vec<Bytes> = events.filter_map(|e| request.translate(e)).collect();
                    cursor = cursor.max(state.store.rv());
                    Ok(lines)
                }
                Err(e) => Err(expired(&e)),
            }
        };
        match batch {
            Ok(lines) => {
                for event in lines {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                let _ = tx.send(error).await;
                return;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = bookmarks.tick(), if request.bookmarks => {
                if tx.send(request.bookmark(cursor, false)).await.is_err() {
                    return;
                }
            }
            () = async { sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => return,
            () = stopped(&mut shutdown, generation) => return,
            () = tx.closed() => return,
        }
    }
}
