//! The object store: JSON objects keyed by resource, namespace and name, one global
//! resourceVersion counter (like etcd's revision), and the change history watches read.
//! Writes live in `store/write.rs`, server-side apply in `store/apply.rs`.

mod apply;
mod write;

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::sync::watch;

use crate::history::{Event, EventType, History, HistoryError};
use crate::meta::Clock;
use crate::registry::{Gvr, Registry, RegistryError, ResourceInfo};
use crate::status::{Reason, Status};

pub use apply::ApplyOptions;
pub use write::{Origin, Part, Preconditions};

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub object: Value,
    /// Server-side apply: which field manager owns each applied leaf field.
    pub owners: BTreeMap<Vec<String>, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the server could not find the requested resource ({0})")]
    UnknownResource(Gvr),
    #[error("{} \"{name}\" not found", qualified(.gvr))]
    NotFound { gvr: Gvr, name: String },
    #[error("{} \"{name}\" already exists", qualified(.gvr))]
    AlreadyExists { gvr: Gvr, name: String },
    #[error("Operation cannot be fulfilled on {} \"{name}\": {why}", qualified(.gvr))]
    Conflict { gvr: Gvr, name: String, why: String },
    /// `message` reads `Kind "name" is invalid: field: Invalid value: why` (see `invalid`).
    #[error("{message}")]
    Invalid {
        gvr: Gvr,
        name: String,
        message: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Expired(#[from] HistoryError),
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLarge { requested: u64, current: u64 },
}

impl StoreError {
    pub(crate) fn invalid(gvr: &Gvr, kind: &str, name: &str, field: &str, why: &str) -> Self {
        StoreError::Invalid {
            gvr: gvr.clone(),
            name: name.to_owned(),
            message: format!("{kind} {name:?} is invalid: {field}: Invalid value: {why}"),
        }
    }

    pub fn status(&self) -> Status {
        let message = self.to_string();
        match self {
            StoreError::UnknownResource(_) => Status::new(Reason::NotFound, message),
            StoreError::NotFound { gvr, name } => {
                Status::new(Reason::NotFound, message).with_details(&gvr.group, &gvr.resource, name)
            }
            StoreError::AlreadyExists { gvr, name } => Status::new(Reason::AlreadyExists, message)
                .with_details(&gvr.group, &gvr.resource, name),
            StoreError::Conflict { gvr, name, .. } => {
                Status::new(Reason::Conflict, message).with_details(&gvr.group, &gvr.resource, name)
            }
            StoreError::Invalid { gvr, name, .. } => {
                Status::new(Reason::Invalid, message).with_details(&gvr.group, &gvr.resource, name)
            }
            StoreError::BadRequest(_) => Status::new(Reason::BadRequest, message),
            StoreError::Expired(_) => Status::new(Reason::Expired, message),
            StoreError::TooLarge { .. } => Status::new(Reason::Timeout, message),
        }
    }
}

/// `pods` for the core group, `authorizationpolicies.ferrule.dev` otherwise: how the API server
/// names a resource in messages.
pub fn qualified(gvr: &Gvr) -> String {
    if gvr.group.is_empty() {
        gvr.resource.clone()
    } else {
        format!("{}.{}", gvr.resource, gvr.group)
    }
}

pub fn key_of(object: &Value) -> Key {
    let text = |field: &str| {
        object
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (text("namespace"), text("name"))
}

pub(crate) struct Store {
    registry: Registry,
    objects: BTreeMap<Gvr, BTreeMap<Key, Stored>>,
    history: History,
    rv: u64,
    pub clock: Clock,
    changes: watch::Sender<u64>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Store {
            registry: Registry::builtin(),
            objects: BTreeMap::new(),
            history: History::new(history_limit),
            rv: 0,
            clock: Clock::default(),
            changes: watch::channel(0).0,
        }
    }

    /// Ticks on every write and compaction.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn oldest_rv(&self) -> u64 {
        self.history.oldest()
    }

    pub fn info(&self, gvr: &Gvr) -> Result<&ResourceInfo, StoreError> {
        self.registry
            .get(gvr)
            .ok_or_else(|| StoreError::UnknownResource(gvr.clone()))
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn register(&mut self, info: ResourceInfo) {
        self.registry.insert(info);
    }

    /// Forgets a resource and deletes its objects (with DELETED events), as deleting a CRD does.
    pub fn unregister(&mut self, gvr: &Gvr) {
        if self.registry.get(gvr).is_none() {
            return;
        }
        for key in self.keys(gvr) {
            let _ = self.delete(gvr, &key.0, &key.1, &Preconditions::default());
        }
        self.registry.remove(gvr);
    }

    pub fn get(&self, gvr: &Gvr, namespace: &str, name: &str) -> Result<&Value, StoreError> {
        self.info(gvr)?;
        self.objects
            .get(gvr)
            .and_then(|objects| objects.get(&(namespace.to_owned(), name.to_owned())))
            .map(|stored| &stored.object)
            .ok_or_else(|| StoreError::NotFound {
                gvr: gvr.clone(),
                name: name.to_owned(),
            })
    }

    /// Every object of a resource, by namespace and name.
    pub fn iter(&self, gvr: &Gvr) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects
            .get(gvr)
            .into_iter()
            .flat_map(|objects| objects.iter().map(|(k, s)| (k, &s.object)))
    }

    fn keys(&self, gvr: &Gvr) -> Vec<Key> {
        self.iter(gvr).map(|(k, _)| k.clone()).collect()
    }

    pub fn history_after(
        &self,
        rv: u64,
    ) -> Result<impl DoubleEndedIterator<Item = &Event>, HistoryError> {
        self.history.after(rv)
    }

    /// The resource's objects as they were at `rv`, rebuilt by undoing later events.
    pub fn snapshot_at(&self, gvr: &Gvr, rv: u64) -> Result<BTreeMap<Key, Value>, StoreError> {
        if rv > self.rv {
            return Err(StoreError::TooLarge {
                requested: rv,
                current: self.rv,
            });
        }
        let mut objects: BTreeMap<Key, Value> = self
            .iter(gvr)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for event in self.history.after(rv)?.rev().filter(|e| e.gvr == *gvr) {
            let key = key_of(&event.object);
            match (&event.kind, &event.previous) {
                (EventType::Added, _) | (_, None) => {
                    objects.remove(&key);
                }
                (EventType::Modified | EventType::Deleted, Some(previous)) => {
                    objects.insert(key, previous.clone());
                }
            }
        }
        Ok(objects)
    }

    /// Expires every resourceVersion handed out so far: watches and continue tokens naming one
    /// get 410 and clients must list again (an API server restart after an etcd compaction).
    pub fn compact(&mut self) {
        self.rv += 1;
        self.history.compact(self.rv);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Logs a write (already given `self.rv`). A CRD's own event goes first: what it does to
    /// the registry (deleting custom resources of versions it no longer serves) comes after.
    fn record(&mut self, gvr: &Gvr, kind: EventType, object: Value, previous: Option<Value>) {
        let crd = gvr.is_crd().then(|| (object.clone(), previous.clone()));
        self.history.push(Event {
            rv: self.rv,
            gvr: gvr.clone(),
            kind,
            object,
            previous,
        });
        self.changes.send_modify(|n| *n += 1);
        if let Some((object, previous)) = crd {
            self.crd_changed(kind, &object, previous.as_ref());
        }
    }

    /// Keeps the registry in step with CustomResourceDefinitions.
    fn crd_changed(&mut self, kind: EventType, object: &Value, previous: Option<&Value>) {
        let old = previous
            .and_then(|p| Registry::from_crd(p).ok())
            .unwrap_or_default();
        let new = match kind {
            EventType::Deleted => Vec::new(),
            _ => Registry::from_crd(object).unwrap_or_default(),
        };
        for info in old {
            if !new.iter().any(|n| n.gvr == info.gvr) {
                self.unregister(&info.gvr);
            }
        }
        for info in new {
            self.registry.insert(info);
        }
    }

    fn validate_crd(gvr: &Gvr, object: &Value) -> Result<(), StoreError> {
        if !gvr.is_crd() {
            return Ok(());
        }
        Registry::from_crd(object)
            .map(drop)
            .map_err(|e: RegistryError| {
                StoreError::invalid(
                    gvr,
                    "CustomResourceDefinition",
                    &key_of(object).1,
                    "spec",
                    &e.to_string(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn crd(versions: &[&str]) -> Value {
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| json!({"name": v, "served": true}))
            .collect();
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Cluster",
            "names": {"plural": "widgets", "kind": "Widget"}, "versions": versions}})
    }

    #[test]
    fn crd_updates_register_versions_and_drop_objects_of_removed_ones_in_order() {
        let mut store = Store::new(100);
        let crds = Gvr::new(
            crate::registry::CRD_GROUP,
            "v1",
            "customresourcedefinitions",
        );
        let v1 = Gvr::new("example.com", "v1", "widgets");
        store.put(&crds, crd(&["v1"])).unwrap();
        store.put(&v1, json!({"metadata": {"name": "w"}})).unwrap();
        store.put(&crds, crd(&["v2"])).unwrap();
        assert!(matches!(
            store.get(&v1, "", "w"),
            Err(StoreError::UnknownResource(_))
        ));
        assert!(
            store
                .info(&Gvr::new("example.com", "v2", "widgets"))
                .is_ok()
        );
        let events: Vec<(u64, String)> = store
            .history_after(0)
            .unwrap()
            .map(|e| (e.rv, format!("{} {}", e.kind.as_str(), e.gvr.resource)))
            .collect();
        assert_eq!(
            events,
            [
                (1, "ADDED customresourcedefinitions".to_owned()),
                (2, "ADDED widgets".to_owned()),
                (3, "MODIFIED customresourcedefinitions".to_owned()),
                (4, "DELETED widgets".to_owned()),
            ]
        );
    }

    #[test]
    fn generation_counts_spec_changes_and_snapshots_undo_later_writes() {
        let mut store = Store::new(100);
        let pods = Gvr::new("", "v1", "pods");
        store
            .put(
                &Gvr::new("", "v1", "namespaces"),
                json!({"metadata": {"name": "shop"}}),
            )
            .unwrap();
        let pod = |node: &str| json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": {"nodeName": node}});
        let first = store.put(&pods, pod("a")).unwrap();
        let at = store.rv();
        let same = store.put(&pods, pod("a")).unwrap();
        assert_eq!(
            same["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"],
            "no-op"
        );
        let moved = store.put(&pods, pod("b")).unwrap();
        assert_eq!(moved["metadata"]["generation"], 2);
        let mut status = moved.clone();
        status["status"] = json!({"phase": "Running"});
        let running = store
            .replace(&pods, "shop", "p", status, Part::Status, Origin::Api)
            .unwrap();
        assert_eq!(running["metadata"]["generation"], 2, "status is not spec");
        store
            .delete(&pods, "shop", "p", &Preconditions::default())
            .unwrap();
        let then = store.snapshot_at(&pods, at).unwrap();
        assert_eq!(
            then[&("shop".to_owned(), "p".to_owned())]["spec"]["nodeName"],
            "a"
        );
        assert!(store.snapshot_at(&pods, store.rv()).unwrap().is_empty());
    }
}
