//! Server-managed metadata: uids, timestamps, generated names, name validation, and the double's
//! clock (which tests may move forward to expire tokens without sleeping).

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::jiff::Timestamp;
use rand::{Rng, RngCore};
use serde_json::{Value, json};

/// Wall-clock time plus whatever the test advanced it by.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    offset: Duration,
}

impl Clock {
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + self.offset
    }

    pub fn advance(&mut self, by: Duration) {
        self.offset += by;
    }
}

/// The `PartialObjectMetadata` view of an object, for clients that ask for metadata only.
pub fn partial_object(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A list (`items`) or single object turned into its `PartialObjectMetadata` view.
pub fn partial_response(document: Value) -> Value {
    match document.get("items").and_then(Value::as_array) {
        Some(items) => json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadataList",
            "metadata": document.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "items": items.iter().map(partial_object).collect::<Vec<_>>(),
        }),
        None => partial_object(&document),
    }
}

/// RFC 3339 in seconds, as `metav1.Time` serializes.
pub fn timestamp(at: SystemTime) -> String {
    let at = Timestamp::try_from(at).unwrap_or(Timestamp::UNIX_EPOCH);
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", at).unwrap_or_default()
}

/// A random version-4 UUID.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// 32 random bytes, base64url: a bearer token nobody can guess.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The suffix `metadata.generateName` gets: five characters from the API server's alphabet.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// DNS-1123 subdomain (most objects) or label (namespaces): the API server's message on failure.
pub fn validate_name(name: &str, label_only: bool) -> Result<(), String> {
    let max = if label_only { 63 } else { 253 };
    let allowed = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (c == '.' && !label_only)
    };
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() {
        return Err("name or generateName is required".to_owned());
    }
    if name.len() > max {
        return Err(format!("must be no more than {max} characters"));
    }
    if !name.chars().all(allowed) || !edge_ok(name.chars().next()) || !edge_ok(name.chars().last())
    {
        let what = if label_only {
            "RFC 1123 label"
        } else {
            "RFC 1123 subdomain"
        };
        return Err(format!(
            "a lowercase {what} must consist of lower case alphanumeric characters, '-'{} and must start and end with an alphanumeric character",
            if label_only { "" } else { " or '.'" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_1123() {
        assert!(validate_name("web-0.shop", false).is_ok());
        assert!(validate_name("web-0.shop", true).is_err());
        assert!(validate_name("Web", false).is_err());
        assert!(validate_name("-web", false).is_err());
        assert!(validate_name("", false).is_err());
        assert!(validate_name(&"a".repeat(64), true).is_err());
    }

    #[test]
    fn uids_and_tokens_look_right() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert_ne!(new_uid(), uid);
        assert_eq!(new_token().len(), 43);
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
