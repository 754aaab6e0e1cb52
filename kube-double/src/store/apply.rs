//! Server-side apply, approximated: create-or-merge with the applied body, plus field ownership
//! per field manager. Every leaf field (lists count as one leaf) belongs to the manager that last
//! applied it; applying a different value to another manager's field is a 409 conflict unless
//! `force`, and fields a manager stops applying are removed. Writes other than apply own nothing.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Origin, Part, Store, StoreError};
use crate::registry::Gvr;

/// The `fieldManager` and `force` query parameters of an apply patch.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub manager: String,
    pub force: bool,
}

type Path = Vec<String>;

const SERVER_METADATA: [&str; 7] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
];

impl Store {
    pub fn apply(
        &mut self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        body: Value,
        part: Part,
        options: &ApplyOptions,
    ) -> Result<Value, StoreError> {
        let info = self.info(gvr)?.clone();
        if !body.is_object() {
            return Err(StoreError::BadRequest(
                "an apply patch must be a JSON object".to_owned(),
            ));
        }
        let applied = match part {
            Part::Status => json!({"status": body.get("status").cloned().unwrap_or(Value::Null)}),
            Part::Main if info.status => {
                let mut body = body.clone();
                body.as_object_mut().map(|b| b.remove("status"));
                body
            }
            Part::Main => body.clone(),
        };
        let mut paths = Vec::new();
        leaf_paths(&applied, &mut Vec::new(), &mut paths);
        let key = (namespace.to_owned(), name.to_owned());

        if self.get(gvr, namespace, name).is_err() && part == Part::Main {
            let mut object = applied;
            super::write::metadata(&mut object)
                .entry("name")
                .or_insert_with(|| json!(name));
            let created = self.create(gvr, namespace, object, Origin::Api)?;
            self.set_owners(
                gvr,
                &key,
                paths
                    .into_iter()
                    .map(|p| (p, options.manager.clone()))
                    .collect(),
            );
            return Ok(created);
        }
        let stored = self.get(gvr, namespace, name)?.clone();
        let mut owners = self.owners(gvr, &key);
        let conflicts: Vec<String> = paths
            .iter()
            .filter_map(|path| {
                let owner = owners
                    .get(path)
                    .filter(|owner| **owner != options.manager)?;
                (lookup(&stored, path) != lookup(&applied, path))
                    .then(|| format!("conflict with {owner:?}: .{}", path.join(".")))
            })
            .collect();
        if !conflicts.is_empty() && !options.force {
            let plural = if conflicts.len() == 1 { "" } else { "s" };
            return Err(StoreError::Conflict {
                gvr: gvr.clone(),
                name: name.to_owned(),
                why: format!(
                    "Apply failed with {} conflict{plural}: {}",
                    conflicts.len(),
                    conflicts.join(", ")
                ),
            });
        }
        let mut new = stored;
        let dropped: Vec<Path> = owners
            .iter()
            .filter(|(path, owner)| **owner == options.manager && !paths.contains(path))
            .map(|(path, _)| path.clone())
            .collect();
        for path in dropped {
            remove(&mut new, &path);
            owners.remove(&path);
        }
        json_patch::merge(&mut new, &applied);
        for path in paths {
            owners.insert(path, options.manager.clone());
        }
        let result = self.replace(gvr, namespace, name, new, part, Origin::Api)?;
        self.set_owners(gvr, &key, owners);
        Ok(result)
    }

    fn owners(&self, gvr: &Gvr, key: &super::Key) -> BTreeMap<Path, String> {
        self.objects
            .get(gvr)
            .and_then(|objects| objects.get(key))
            .map(|stored| stored.owners.clone())
            .unwrap_or_default()
    }

    fn set_owners(&mut self, gvr: &Gvr, key: &super::Key, owners: BTreeMap<Path, String>) {
        if let Some(stored) = self
            .objects
            .get_mut(gvr)
            .and_then(|objects| objects.get_mut(key))
        {
            stored.owners = owners;
        }
    }
}

/// Every leaf field of an applied body, without the fields the server manages.
fn leaf_paths(value: &Value, prefix: &mut Path, out: &mut Vec<Path>) {
    match value {
        Value::Object(fields) => {
            for (field, child) in fields {
                let top = prefix.is_empty() && (field == "apiVersion" || field == "kind");
                let server = prefix.len() == 1
                    && prefix[0] == "metadata"
                    && SERVER_METADATA.contains(&field.as_str());
                if top || server {
                    continue;
                }
                prefix.push(field.clone());
                leaf_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ if prefix.is_empty() => {}
        _ => out.push(prefix.clone()),
    }
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, field| v.get(field))
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = value;
    for field in parents {
        match current.get_mut(field) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(fields) = current.as_object_mut() {
        fields.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_paths_skip_server_fields_and_treat_lists_as_leaves() {
        let body = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n"}});
        let mut paths = Vec::new();
        leaf_paths(&body, &mut Vec::new(), &mut paths);
        let dotted: Vec<String> = paths.iter().map(|p| p.join(".")).collect();
        assert_eq!(
            dotted,
            ["metadata.labels.a", "spec.containers", "spec.nodeName"]
        );
    }
}
