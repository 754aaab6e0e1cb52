//! Create, replace and delete, with the API server's metadata rules: uid, creationTimestamp and
//! generation are the server's, resourceVersion is a precondition, `.status` changes only through
//! the status subresource, and a write that changes nothing is not a write.

use serde_json::{Map, Value, json};

use super::{Store, StoreError, Stored, key_of};
use crate::history::EventType;
use crate::meta::{name_suffix, new_uid, timestamp, validate_name};
use crate::registry::{Gvr, ResourceInfo};

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The resource itself: `.status` is kept as stored when the resource has a status subresource.
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
}

/// Who writes: a client through the API, or a test acting directly (may set `.status` with the
/// rest — an object without `.status` keeps the stored one — and is never refused for a stale
/// resourceVersion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Api,
    Direct,
}

/// `DeleteOptions.preconditions`.
#[derive(Clone, Debug, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

const SERVER_FIELDS: [&str; 5] = [
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
];

impl Store {
    pub fn create(
        &mut self,
        gvr: &Gvr,
        namespace: &str,
        mut object: Value,
        origin: Origin,
    ) -> Result<Value, StoreError> {
        let info = self.info(gvr)?.clone();
        prepare(&info, namespace, &mut object)?;
        if info.namespaced {
            self.get(&Gvr::new("", "v1", "namespaces"), "", namespace)?;
        }
        let meta = metadata(&mut object);
        let name = match (text(meta, "name"), text(meta, "generateName")) {
            (Some(name), _) if !name.is_empty() => name,
            (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{}", name_suffix()),
            _ => String::new(),
        };
        validate_name(&name, gvr.is_namespaces())
            .map_err(|why| invalid(&info, &name, "metadata.name", why))?;
        Self::validate_crd(gvr, &object)?;
        let key = (namespace.to_owned(), name.clone());
        if self
            .objects
            .get(gvr)
            .is_some_and(|objects| objects.contains_key(&key))
        {
            return Err(StoreError::AlreadyExists {
                gvr: gvr.clone(),
                name,
            });
        }
        if let Some(fields) = object.as_object_mut() {
            if info.status && origin == Origin::Api {
                fields.remove("status");
            }
            if let Some(status) = initial_status(gvr).filter(|_| !fields.contains_key("status")) {
                fields.insert("status".into(), status);
            }
        }
        self.rv += 1;
        let now = timestamp(self.clock.now());
        let meta = metadata(&mut object);
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now));
        meta.insert("generation".into(), json!(1));
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        let stored = Stored {
            object: object.clone(),
            owners: Default::default(),
        };
        self.objects
            .entry(gvr.clone())
            .or_default()
            .insert(key, stored);
        self.record(gvr, EventType::Added, object.clone(), None);
        Ok(object)
    }

    pub fn replace(
        &mut self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        mut object: Value,
        part: Part,
        origin: Origin,
    ) -> Result<Value, StoreError> {
        let info = self.info(gvr)?.clone();
        let stored = self.get(gvr, namespace, name)?.clone();
        prepare(&info, namespace, &mut object)?;
        let meta = metadata(&mut object);
        if let Some(body_name) = text(meta, "name").filter(|n| n != name) {
            return Err(StoreError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let stored_rv = stored
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(Value::Null);
        let body_rv = meta
            .get("resourceVersion")
            .filter(|rv| rv.as_str().is_some_and(|s| !s.is_empty()));
        if origin == Origin::Api && body_rv.is_some_and(|rv| *rv != stored_rv) {
            return Err(StoreError::Conflict {
                gvr: gvr.clone(),
                name: name.to_owned(),
                why: "the object has been modified; please apply your changes to the latest version and try again"
                    .to_owned(),
            });
        }
        let mut new = match part {
            Part::Main => {
                let body_status = object.get("status").is_some();
                if info.status && (origin == Origin::Api || !body_status) {
                    set_field(&mut object, "status", stored.get("status").cloned());
                }
                object
            }
            Part::Status => {
                let mut new = stored.clone();
                set_field(&mut new, "status", object.get("status").cloned());
                new
            }
        };
        Self::validate_crd(gvr, &new)?;
        let old_meta = stored
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let meta = metadata(&mut new);
        for field in SERVER_FIELDS {
            match old_meta.get(field) {
                Some(value) => meta.insert(field.to_owned(), value.clone()),
                None => meta.remove(field),
            };
        }
        meta.insert("resourceVersion".into(), stored_rv);
        if new == stored {
            return Ok(stored);
        }
        if content(&stored, info.status) != content(&new, info.status) {
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            metadata(&mut new).insert("generation".into(), json!(generation + 1));
        }
        self.rv += 1;
        metadata(&mut new).insert("resourceVersion".into(), json!(self.rv.to_string()));
        if let Some(slot) = self
            .objects
            .get_mut(gvr)
            .and_then(|objects| objects.get_mut(&(namespace.to_owned(), name.to_owned())))
        {
            slot.object = new.clone();
        }
        self.record(gvr, EventType::Modified, new.clone(), Some(stored));
        Ok(new)
    }

    /// Deletes at once (no finalizers, no grace period). A namespace takes its objects with it, a
    /// CustomResourceDefinition its custom resources.
    pub fn delete(
        &mut self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        pre: &Preconditions,
    ) -> Result<Value, StoreError> {
        let stored = self.get(gvr, namespace, name)?.clone();
        for (field, expected) in [
            ("uid", &pre.uid),
            ("resourceVersion", &pre.resource_version),
        ] {
            let actual = stored
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some(expected) = expected.as_deref().filter(|e| *e != actual) {
                let label = if field == "uid" {
                    "UID"
                } else {
                    "ResourceVersion"
                };
                return Err(StoreError::Conflict {
                    gvr: gvr.clone(),
                    name: name.to_owned(),
                    why: format!(
                        "Precondition failed: {label} in precondition: {expected}, {label} in object meta: {actual}"
                    ),
                });
            }
        }
        if gvr.is_namespaces() {
            let namespaced: Vec<Gvr> = self
                .objects
                .keys()
                .filter(|g| self.registry.get(g).is_some_and(|i| i.namespaced))
                .cloned()
                .collect();
            for child_gvr in namespaced {
                let children: Vec<String> = self
                    .iter(&child_gvr)
                    .filter(|(k, _)| k.0 == name)
                    .map(|(k, _)| k.1.clone())
                    .collect();
                for child in children {
                    let _ = self.delete(&child_gvr, name, &child, &Preconditions::default());
                }
            }
        }
        if gvr.is_crd() {
            for info in crate::registry::Registry::from_crd(&stored).unwrap_or_default() {
                self.unregister(&info.gvr);
            }
        }
        if let Some(objects) = self.objects.get_mut(gvr) {
            objects.remove(&(namespace.to_owned(), name.to_owned()));
        }
        self.rv += 1;
        let mut gone = stored.clone();
        metadata(&mut gone).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.record(gvr, EventType::Deleted, gone.clone(), Some(stored));
        Ok(gone)
    }

    /// Creates or replaces as a test party would: status included, no resourceVersion check.
    pub fn put(&mut self, gvr: &Gvr, object: Value) -> Result<Value, StoreError> {
        let namespaced = self.info(gvr)?.namespaced;
        let (namespace, name) = key_of(&object);
        let namespace = if namespaced { namespace } else { String::new() };
        if !name.is_empty() && self.get(gvr, &namespace, &name).is_ok() {
            self.replace(gvr, &namespace, &name, object, Part::Main, Origin::Direct)
        } else {
            self.create(gvr, &namespace, object, Origin::Direct)
        }
    }
}

/// What the API server fills in for a new object without status.
fn initial_status(gvr: &Gvr) -> Option<Value> {
    match (gvr.group.as_str(), gvr.resource.as_str()) {
        ("", "pods") => Some(json!({"phase": "Pending"})),
        ("", "namespaces") => Some(json!({"phase": "Active"})),
        _ => None,
    }
}

/// Checks what the request says about the object against the URL, and fills in what it omits.
fn prepare(info: &ResourceInfo, namespace: &str, object: &mut Value) -> Result<(), StoreError> {
    let Some(fields) = object.as_object_mut() else {
        return Err(StoreError::BadRequest(
            "the request body must be a JSON object".to_owned(),
        ));
    };
    for (field, expected) in [
        ("apiVersion", info.gvr.api_version()),
        ("kind", info.kind.clone()),
    ] {
        match fields.get(field).and_then(Value::as_str) {
            Some(given) if given != expected => {
                return Err(StoreError::BadRequest(format!(
                    "the {field} of the object ({given}) does not match the expected {field} ({expected})"
                )));
            }
            _ => fields.insert(field.to_owned(), json!(expected)),
        };
    }
    let meta = metadata(object);
    if info.namespaced {
        if namespace.is_empty() {
            return Err(StoreError::BadRequest(format!(
                "a namespace is required for {}",
                info.gvr.resource
            )));
        }
        if text(meta, "namespace").is_some_and(|ns| !ns.is_empty() && ns != namespace) {
            return Err(StoreError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".to_owned(),
            ));
        }
        meta.insert("namespace".into(), json!(namespace));
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

/// `object.metadata` as a map, created if missing or not a map. `object` must be a map.
pub(super) fn metadata(object: &mut Value) -> &mut Map<String, Value> {
    let fields = object.as_object_mut().expect("objects are JSON maps");
    let meta = fields.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("just made a map")
}

fn text(meta: &Map<String, Value>, field: &str) -> Option<String> {
    meta.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn set_field(object: &mut Value, field: &str, value: Option<Value>) {
    if let Some(fields) = object.as_object_mut() {
        match value {
            Some(value) => fields.insert(field.to_owned(), value),
            None => fields.remove(field),
        };
    }
}

/// What `metadata.generation` counts changes of: everything but metadata (and status, when it has
/// its own subresource).
fn content(object: &Value, status_subresource: bool) -> Value {
    let mut content = object.clone();
    if let Some(fields) = content.as_object_mut() {
        fields.remove("metadata");
        if status_subresource {
            fields.remove("status");
        }
    }
    content
}

fn invalid(info: &ResourceInfo, name: &str, field: &str, why: String) -> StoreError {
    StoreError::invalid(
        &info.gvr,
        &info.kind,
        name,
        field,
        &format!("{name:?}: {why}"),
    )
}
