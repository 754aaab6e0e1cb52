//! PATCH bodies by content type: JSON merge patch (RFC 7386; strategic merge patch is treated as
//! one, so lists are replaced whole), JSON patch (RFC 6902) and server-side apply (whose field
//! ownership lives in `apply`).

use serde_json::Value;

use crate::status::{Reason, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
    Apply,
}

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {0:?})"
    )]
    MediaType(String),
    #[error("the body of the request could not be decoded: {0}")]
    Body(#[from] serde_json::Error),
    #[error("the server rejected our request due to an error in our request: {0}")]
    JsonPatch(#[from] json_patch::PatchError),
    #[error("merge patches need an object, not {0}")]
    NotAnObject(&'static str),
}

impl PatchError {
    pub fn status(&self) -> Status {
        let reason = match self {
            PatchError::MediaType(_) => Reason::UnsupportedMediaType,
            PatchError::Body(_) | PatchError::NotAnObject(_) => Reason::BadRequest,
            PatchError::JsonPatch(_) => Reason::Invalid,
        };
        Status::new(reason, self.to_string())
    }
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<Self, PatchError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(PatchError::MediaType(other.to_owned())),
        }
    }
}

/// Applies a merge, strategic or JSON patch body to `target` in place. (Apply goes through
/// `apply::apply`, which needs the object's field owners.)
pub fn patch(kind: PatchType, target: &mut Value, body: &[u8]) -> Result<(), PatchError> {
    match kind {
        PatchType::Merge | PatchType::Strategic | PatchType::Apply => {
            let patch: Value = serde_json::from_slice(body)?;
            if !patch.is_object() {
                return Err(PatchError::NotAnObject(json_kind(&patch)));
            }
            json_patch::merge(target, &patch);
        }
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)?;
            json_patch::patch(target, &patch)?;
        }
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_merges_maps_removes_nulls_and_replaces_lists() {
        let mut doc =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [1, 2]}});
        let body = br#"{"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"ports":[3]}}"#;
        patch(PatchType::Strategic, &mut doc, body).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"ports": [3]}})
        );
    }

    #[test]
    fn json_patch_supports_add_remove_replace_and_a_failing_test() {
        let mut doc = json!({"spec": {"taints": [{"key": "a"}, {"key": "b"}]}, "x": 1});
        let body = br#"[{"op":"test","path":"/x","value":1},{"op":"remove","path":"/spec/taints/0"},
            {"op":"add","path":"/spec/taints/-","value":{"key":"c"}},{"op":"replace","path":"/x","value":2}]"#;
        patch(PatchType::Json, &mut doc, body).unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"taints": [{"key": "b"}, {"key": "c"}]}, "x": 2})
        );
        let failing = br#"[{"op":"test","path":"/x","value":1}]"#;
        let err = patch(PatchType::Json, &mut doc, failing).unwrap_err();
        assert_eq!(err.status().code(), 422);
    }

    #[test]
    fn content_types_map_to_patch_types() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Merge
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml").unwrap(),
            PatchType::Apply
        );
        assert_eq!(
            PatchType::from_content_type("application/json")
                .unwrap_err()
                .status()
                .code(),
            415
        );
    }
}
