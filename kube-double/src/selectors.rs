//! `labelSelector` and `fieldSelector` query parameters, parsed once and matched against stored
//! objects. Field selectors accept any dotted path (`spec.nodeName`, `metadata.name`,
//! `status.phase`); a missing field compares as the empty string, as on a real API server.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error(
        "invalid field selector term {0:?}: expected field=value, field==value or field!=value"
    )]
    Field(String),
    #[error("invalid label selector term {0:?}")]
    Label(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelTerm {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldTerm {
    path: Vec<String>,
    value: String,
    equal: bool,
}

/// Both selectors of one list or watch request; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    labels: Vec<LabelTerm>,
    fields: Vec<FieldTerm>,
}

impl Selectors {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, SelectorError> {
        let labels = match labels {
            Some(text) => split_top_level(text)
                .into_iter()
                .filter(|term| !term.trim().is_empty())
                .map(|term| parse_label_term(term.trim()))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(text) => text
                .split(',')
                .filter(|term| !term.trim().is_empty())
                .map(|term| parse_field_term(term.trim()))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Selectors { labels, fields })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let labels_match = self.labels.iter().all(|term| match term {
            LabelTerm::Equals(k, v) => label(k) == Some(v),
            LabelTerm::NotEquals(k, v) => label(k) != Some(v),
            LabelTerm::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelTerm::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelTerm::Exists(k) => label(k).is_some(),
            LabelTerm::NotExists(k) => label(k).is_none(),
        });
        labels_match
            && self
                .fields
                .iter()
                .all(|term| (field_value(object, &term.path) == term.value) == term.equal)
    }
}

fn field_value(object: &Value, path: &[String]) -> String {
    let mut current = object;
    for part in path {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn parse_field_term(term: &str) -> Result<FieldTerm, SelectorError> {
    let (path, value, equal) = if let Some((k, v)) = term.split_once("!=") {
        (k, v, false)
    } else if let Some((k, v)) = term.split_once("==") {
        (k, v, true)
    } else if let Some((k, v)) = term.split_once('=') {
        (k, v, true)
    } else {
        return Err(SelectorError::Field(term.to_owned()));
    };
    let path = path.trim();
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(SelectorError::Field(term.to_owned()));
    }
    Ok(FieldTerm {
        path: path.split('.').map(str::to_owned).collect(),
        value: value.trim().to_owned(),
        equal,
    })
}

/// Splits on commas outside parentheses (`a in (x,y),b` is two terms).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn parse_label_term(term: &str) -> Result<LabelTerm, SelectorError> {
    let bad = || SelectorError::Label(term.to_owned());
    let key = |k: &str| {
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            Err(bad())
        } else {
            Ok(k.to_owned())
        }
    };
    if let Some(rest) = term.strip_prefix('!') {
        return Ok(LabelTerm::NotExists(key(rest)?));
    }
    if let Some((head, set)) = term.split_once('(') {
        let set = set.strip_suffix(')').ok_or_else(bad)?;
        let values: Vec<String> = set.split(',').map(|v| v.trim().to_owned()).collect();
        let mut words = head.split_whitespace();
        let (Some(k), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad());
        };
        return match op {
            "in" => Ok(LabelTerm::In(key(k)?, values)),
            "notin" => Ok(LabelTerm::NotIn(key(k)?, values)),
            _ => Err(bad()),
        };
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(LabelTerm::NotEquals(key(k)?, v.trim().to_owned()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelTerm::Equals(key(k)?, v.trim().to_owned()));
    }
    Ok(LabelTerm::Exists(key(term)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, labels: Value) -> Value {
        let mut pod =
            json!({"metadata": {"name": name, "namespace": "shop", "labels": labels}, "spec": {}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        pod
    }

    fn matching(labels: Option<&str>, fields: Option<&str>, objects: &[Value]) -> Vec<String> {
        let selectors = Selectors::parse(labels, fields).unwrap();
        objects
            .iter()
            .filter(|o| selectors.matches(o))
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn field_selectors_compare_paths_and_treat_missing_as_empty() {
        let pods = [
            pod("a", Some("node-1"), json!({})),
            pod("b", Some("node-2"), json!({})),
            pod("c", None, json!({})),
        ];
        assert_eq!(matching(None, Some("spec.nodeName=node-1"), &pods), ["a"]);
        assert_eq!(
            matching(None, Some("spec.nodeName!=node-1"), &pods),
            ["b", "c"]
        );
        assert_eq!(matching(None, Some("spec.nodeName="), &pods), ["c"]);
        assert_eq!(
            matching(
                None,
                Some("metadata.namespace==shop,metadata.name!=b"),
                &pods
            ),
            ["a", "c"]
        );
        assert_eq!(
            Selectors::parse(None, Some("spec.nodeName")),
            Err(SelectorError::Field("spec.nodeName".into()))
        );
    }

    #[test]
    fn label_selectors_support_equality_sets_and_existence() {
        let pods = [
            pod("a", None, json!({"app": "web", "tier": "front"})),
            pod("b", None, json!({"app": "db"})),
            pod("c", None, json!({})),
        ];
        assert_eq!(matching(Some("app=web"), None, &pods), ["a"]);
        assert_eq!(matching(Some("app!=web"), None, &pods), ["b", "c"]);
        assert_eq!(matching(Some("app"), None, &pods), ["a", "b"]);
        assert_eq!(matching(Some("!app"), None, &pods), ["c"]);
        assert_eq!(matching(Some("app in (web, db),!tier"), None, &pods), ["b"]);
        assert_eq!(matching(Some("app notin (web)"), None, &pods), ["b", "c"]);
        assert!(Selectors::parse(Some("app within (x)"), None).is_err());
    }
}
