//! The parts of the OpenAPI schema derive attributes cannot say: patterns shared by several
//! fields, ports as int-or-string items, and label maps.
//!
//! A port item is `x-kubernetes-int-or-string` (a structural schema may not give it a `type`)
//! with both a number range and a string pattern: each keyword applies only to values of its own
//! type, as in the schemas of `resource.Quantity` fields.

use schemars::{Schema, SchemaGenerator, json_schema};

/// RFC 1123 label (namespaces, policy names).
pub(super) const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// RFC 1123 subdomain (service accounts).
pub(super) const DNS_SUBDOMAIN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// The scheme and a trust domain; the rest (path segments, globs) is checked by `to_policy`.
pub(super) const SPIFFE_ID: &str = "^spiffe://[a-z0-9._-]+(/.*)?$";
pub(super) const TRUST_DOMAIN: &str = "^[a-z0-9._-]+$";
/// `8080` as a string, or `9000-9100`; that the first port does not exceed the last is checked
/// by `to_policy`.
const PORT_TEXT: &str = "^[0-9]{1,5}(-[0-9]{1,5})?$";
const LABEL_VALUE: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

/// `ports`: a non-empty list of ports 1-65535 and `"first-last"` ranges.
pub(super) fn ports(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Destination ports (8080) and inclusive ranges (\"9000-9100\"); absent: \
                        any port.",
        "type": "array",
        "nullable": true,
        "minItems": 1,
        "items": {
            "x-kubernetes-int-or-string": true,
            "minimum": 1,
            "maximum": 65535,
            "pattern": PORT_TEXT,
        },
    })
}

/// `matchLabels`: label values. Keys cannot be constrained in OpenAPI v3; `to_policy` checks
/// them.
pub(super) fn match_labels(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Labels the workload must carry, each with this value.",
        "type": "object",
        "nullable": true,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": LABEL_VALUE,
        },
    })
}

/// `action`: optional since a default-action document has none. (The derived schema of an
/// optional enum would lose the field's description and, for some enums, list `null`.)
pub(super) fn action(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "ALLOW, DENY or AUDIT (mark allowed requests to be logged as if denied). \
                        Required unless defaultAction is given.",
        "type": "string",
        "nullable": true,
        "enum": ["ALLOW", "DENY", "AUDIT"],
    })
}

/// `defaultAction`, see [`action`].
pub(super) fn default_action(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "deny or allow: what happens to workloads of this namespace (of the \
                        mesh, in the control plane's namespace) that no ALLOW policy selects. \
                        Stands alone, without action, selector or rules.",
        "type": "string",
        "nullable": true,
        "enum": ["allow", "deny"],
    })
}
