//! Reading and writing policies: multi-document YAML files, the canonical JSON form, and errors
//! that say where and why.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::error::{Format, Location, Origin, PolicyError};
use crate::key::PolicyKey;
use crate::policy::{API_VERSION, KIND, Policy, wrong_constant};

/// The origin named in errors from [`Policy::from_json`].
const JSON_ORIGIN: &str = "policy JSON";

/// Parses every `AuthorizationPolicy` document of a YAML file (documents separated by `---`).
/// `origin` (usually the file name) starts every error message. Empty documents are skipped;
/// a file without any policy, or with one namespace/name twice, is refused. Returns all
/// policies or the first error, never some of them.
pub fn parse_documents(text: &str, origin: &str) -> Result<Vec<Policy>, PolicyError> {
    let mut policies = Vec::new();
    let mut first_document: BTreeMap<PolicyKey, usize> = BTreeMap::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let policy = match serde_path_to_error::deserialize::<_, Option<Policy>>(document) {
            Ok(Some(policy)) => policy,
            Ok(None) => continue,
            Err(error) => return Err(yaml_error(text, index, origin, error)),
        };
        let key = policy.key();
        if let Some(&first) = first_document.get(&key) {
            return Err(PolicyError::Duplicate {
                at: Box::new(Origin {
                    origin: origin.to_owned(),
                    document: Some(number),
                    policy: Some(key.to_string()),
                }),
                key,
                first,
            });
        }
        first_document.insert(key, number);
        policies.push(policy);
    }
    if policies.is_empty() {
        return Err(PolicyError::Empty {
            origin: origin.to_owned(),
        });
    }
    Ok(policies)
}

/// Several policies as one multi-document YAML file, in the order given.
pub fn to_yaml_documents<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> String {
    policies
        .into_iter()
        .map(Policy::to_yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

impl Policy {
    /// The canonical wire and storage form: compact JSON of the same document shape, with
    /// absent and empty optional fields left out and single ports as numbers, so equal policies
    /// give equal strings.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a policy serializes to JSON")
    }

    /// Parses and re-validates the JSON form (agents NACK a push that fails here).
    pub fn from_json(s: &str) -> Result<Self, PolicyError> {
        let mut de = serde_json::Deserializer::from_str(s);
        match serde_path_to_error::deserialize::<_, Policy>(&mut de) {
            Ok(policy) => match de.end() {
                Ok(()) => Ok(policy),
                Err(error) => Err(json_error(s, None, error)),
            },
            Err(error) => {
                let path = error.path().to_string();
                Err(json_error(s, Some(path), error.into_inner()))
            }
        }
    }

    /// One YAML document in the input format, as `ferrule policy get` prints it.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a policy serializes to YAML")
    }
}

/// Validates one document held as a JSON value (built from a Kubernetes object), exactly as a
/// file's document would be; errors start with `origin` and carry no line or column, since the
/// value has no text.
#[cfg(feature = "kubernetes")]
pub(crate) fn from_value(value: &serde_json::Value, origin: &str) -> Result<Policy, PolicyError> {
    serde_path_to_error::deserialize::<_, Policy>(value).map_err(|error| {
        let at = Box::new(Origin {
            origin: origin.to_owned(),
            document: None,
            policy: None,
        });
        let path = error.path().to_string();
        let reason = error.into_inner().to_string();
        invalid(at, Some(value.clone()), path, None, reason)
    })
}

fn yaml_error(
    text: &str,
    index: usize,
    origin: &str,
    error: serde_path_to_error::Error<serde_norway::Error>,
) -> PolicyError {
    // Only the failing document is read again, so this costs nothing on success.
    let document = || {
        serde_norway::Deserializer::from_str(text)
            .nth(index)
            .expect("the failing document exists")
    };
    let at = Box::new(Origin {
        origin: origin.to_owned(),
        document: Some(index + 1),
        policy: None,
    });
    let location = |e: &serde_norway::Error| {
        e.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        })
    };
    if let Err(syntax) = IgnoredAny::deserialize(document()) {
        let location = location(&syntax);
        return PolicyError::Syntax {
            at,
            format: Format::Yaml,
            reason: reason(syntax.to_string(), "", location),
            location,
        };
    }
    let path = error.path().to_string();
    let error = error.into_inner();
    let location = location(&error);
    let reason = reason(
        error.to_string(),
        &error_path_prefix(&error, &path),
        location,
    );
    invalid(
        at,
        serde_json::Value::deserialize(document()).ok(),
        path,
        location,
        reason,
    )
}

fn json_error(text: &str, path: Option<String>, error: serde_json::Error) -> PolicyError {
    let at = Box::new(Origin {
        origin: JSON_ORIGIN.to_owned(),
        document: None,
        policy: None,
    });
    let location = (error.line() != 0).then(|| Location {
        line: error.line(),
        column: error.column(),
    });
    let reason = reason(error.to_string(), "", location);
    match (error.classify(), path) {
        (serde_json::error::Category::Data, Some(path)) => {
            invalid(at, serde_json::from_str(text).ok(), path, location, reason)
        }
        _ => PolicyError::Syntax {
            at,
            format: Format::Json,
            location,
            reason,
        },
    }
}

/// An `Invalid` error, named with the policy key the document states, if any. A wrong
/// `apiVersion` or `kind` is reported in preference to what serde tripped over first, since a
/// document of another kind fails on everything else too.
fn invalid(
    mut at: Box<Origin>,
    document: Option<serde_json::Value>,
    path: String,
    location: Option<Location>,
    reason: String,
) -> PolicyError {
    let text_at = |pointer: &str| {
        document
            .as_ref()
            .and_then(|d| d.pointer(pointer))
            .and_then(serde_json::Value::as_str)
    };
    at.policy = text_at("/metadata/name").map(|name| match text_at("/metadata/namespace") {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    });
    for (field, expected) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        if let Some(found) = text_at(&format!("/{field}"))
            && found != expected
        {
            return PolicyError::Invalid {
                at,
                field: Some(field.to_owned()),
                location: None,
                reason: wrong_constant(expected, found),
            };
        }
    }
    let path = (path != ".").then_some(path);
    if let Some(name) = reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        // Name the missing field itself; the location would be its parent's, so leave it out.
        return PolicyError::Invalid {
            at,
            field: Some(path.map_or_else(|| name.to_owned(), |p| format!("{p}.{name}"))),
            location: None,
            reason: "this required field is missing".to_owned(),
        };
    }
    PolicyError::Invalid {
        at,
        field: path,
        location,
        reason: mapping_not_struct(reason),
    }
}

/// serde calls a mapping a struct, after the Rust type; the document knows no such thing.
fn mapping_not_struct(reason: String) -> String {
    match reason.find("expected struct ") {
        Some(at) => format!("{}expected a mapping", &reason[..at]),
        None => reason,
    }
}

/// serde_norway starts a message with its own path of the value (`spec.rules[0]: `), which is
/// the path of serde_path_to_error or a prefix of it. We state the path ourselves, from
/// serde_path_to_error, which also names unknown fields.
fn error_path_prefix(error: &serde_norway::Error, path: &str) -> String {
    let message = error.to_string();
    match message.split_once(": ") {
        Some((prefix, _)) if !prefix.is_empty() && path.starts_with(prefix) => {
            format!("{prefix}: ")
        }
        _ => String::new(),
    }
}

/// The message without the path prefix and without the location we report separately.
fn reason(message: String, prefix: &str, location: Option<Location>) -> String {
    let message = message.strip_prefix(prefix).unwrap_or(&message);
    match location {
        Some(l) => message.replacen(&format!(" at {l}"), "", 1),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
