//! The `AuthorizationPolicy` custom resource (`ferrule.dev/v1alpha1`, namespaced): the document
//! `ferrule policy apply` takes, as a Kubernetes object.
//!
//! The spec types mirror the document's `spec` field for field (see the crate documentation) and
//! carry the OpenAPI schema the API server checks: the action enum, port numbers 1-65535 and the
//! `"first-last"` range form, name patterns and lengths, non-empty `rules`, `ports` and `from`
//! entries. They deserialize leniently, so that every object a watch delivers can be read and
//! told what is wrong with it: [`AuthorizationPolicy::to_policy`] runs the object through the
//! same validation as a policy file and gives the same field-level errors (`field
//! spec.rules[0].ports[0]: port 70000 is out of range: ports are 1-65535`), which
//! [`AuthorizationPolicyStatus::accepted`] puts on the object's status.
//!
//! A policy in the control plane's own namespace (`mesh_wide_namespace`, by default
//! `ferrule-system`) is mesh-wide, as Istio treats its root namespace; a document without a
//! namespace becomes an object there.

mod schema;
mod status;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Origin, PolicyError};
use crate::policy::{API_VERSION, Action, DefaultAction, KIND, Policy};

pub use status::{
    ACCEPTED, AuthorizationPolicyStatus, REASON_INVALID, REASON_VALID, accepted_condition,
};

// The doc comments below are the schema's descriptions (`kubectl explain`); the crate
// documentation describes the format in full.
/// What the rules of the policy do (`action`) to requests for the workloads `selector` picks.
// Each `printcolumn(...)` repeats `type_ = "string"`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferrule.dev",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    plural = "authorizationpolicies",
    namespaced,
    status = "AuthorizationPolicyStatus",
    derive = "PartialEq",
    category = "ferrule",
    doc = "Which mesh identities may reach which workloads on which ports (ALLOW), must not \
           (DENY), or are logged as if denied (AUDIT); or, with defaultAction alone, what \
           happens to workloads no ALLOW policy selects. A policy in the control plane's \
           namespace applies mesh-wide.",
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action"),
    printcolumn(name = "Default", type_ = "string", json_path = ".spec.defaultAction"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["action", "rules"]}, {"required": ["defaultAction"]}]))]
pub struct AuthorizationPolicySpec {
    /// ALLOW, DENY or AUDIT (mark allowed requests to be logged as if denied). Required unless
    /// `defaultAction` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::action")]
    pub action: Option<Action>,
    /// The destination workloads in scope the policy applies to; absent or empty: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<SelectorSpec>,
    /// At least one; `[{}]` matches all traffic. Required unless `defaultAction` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub rules: Option<Vec<RuleSpec>>,
    /// deny or allow: what happens to workloads of this namespace (of the mesh, in the control
    /// plane's namespace) that no ALLOW policy selects. Stands alone, without `action`,
    /// `selector` or `rules`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::default_action")]
    pub default_action: Option<DefaultAction>,
    /// Fields the schema does not know. The API server prunes them, so they come only with
    /// objects built elsewhere; `to_policy` refuses them as a policy file would.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: BTreeMap<String, serde_json::Value>,
}

/// `spec.selector`: every field given must match the destination workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectorSpec {
    /// The workload's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = schema::DNS_SUBDOMAIN))]
    pub service_account: Option<String>,
    /// Labels the workload must carry, each with this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::match_labels")]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// See [`AuthorizationPolicySpec::unknown_fields`].
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: BTreeMap<String, serde_json::Value>,
}

/// A rule matches a request when its port is in `ports` (if given) and its source matches any
/// `from` entry (if given).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    /// Alternative sources; absent or empty: any authenticated source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<SourceSpec>>,
    /// Destination ports (`8080`) and inclusive ranges (`"9000-9100"`); absent: any port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::ports")]
    pub ports: Option<Vec<IntOrString>>,
    /// See [`AuthorizationPolicySpec::unknown_fields`].
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: BTreeMap<String, serde_json::Value>,
}

/// One `from` entry: every field given must match the source identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1))]
pub struct SourceSpec {
    /// An exact SPIFFE ID, or a glob where `*` matches any run of characters within one path
    /// segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = schema::SPIFFE_ID))]
    pub identity: Option<String>,
    /// Any service account of this namespace, in `trustDomain` or else the destination's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), regex(pattern = schema::DNS_LABEL))]
    pub namespace: Option<String>,
    /// Any identity of this trust domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255), regex(pattern = schema::TRUST_DOMAIN))]
    pub trust_domain: Option<String>,
    /// See [`AuthorizationPolicySpec::unknown_fields`].
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: BTreeMap<String, serde_json::Value>,
}

impl AuthorizationPolicy {
    /// `AuthorizationPolicy <namespace>/<name>`: how errors and logs name the object.
    pub fn display_name(&self) -> String {
        let name = self.metadata.name.as_deref().unwrap_or("<unnamed>");
        match &self.metadata.namespace {
            Some(namespace) => format!("{KIND} {namespace}/{name}"),
            None => format!("{KIND} {name}"),
        }
    }

    /// The validated policy, or the error a policy file with this document would give (without
    /// line and column, and starting with [`display_name`](Self::display_name)). An object in
    /// `mesh_wide_namespace` becomes a mesh-wide policy.
    pub fn to_policy(&self, mesh_wide_namespace: &str) -> Result<Policy, PolicyError> {
        let origin = self.display_name();
        let Some(namespace) = &self.metadata.namespace else {
            return Err(PolicyError::Invalid {
                at: Box::new(origin_only(origin)),
                field: Some("metadata.namespace".to_owned()),
                location: None,
                reason: format!(
                    "{KIND} objects are namespaced; objects in {mesh_wide_namespace} are \
                     mesh-wide"
                ),
            });
        };
        let mut metadata = serde_json::Map::new();
        if let Some(name) = &self.metadata.name {
            metadata.insert("name".to_owned(), name.as_str().into());
        }
        if namespace != mesh_wide_namespace {
            metadata.insert("namespace".to_owned(), namespace.as_str().into());
        }
        let document = serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": metadata,
            "spec": self.spec,
        });
        crate::documents::from_value(&document, &origin).map_err(|mut error| {
            // The origin names the object already.
            if let PolicyError::Invalid { at, .. } = &mut error {
                at.policy = None;
            }
            error
        })
    }

    /// The object for a validated policy, as `ferrule policy apply` writes it in Kubernetes
    /// mode: a mesh-wide policy goes to `mesh_wide_namespace`. A policy *in* that namespace is
    /// refused, since as an object it would become mesh-wide.
    pub fn from_policy(policy: &Policy, mesh_wide_namespace: &str) -> Result<Self, PolicyError> {
        let namespace = match policy.namespace() {
            None => mesh_wide_namespace,
            Some(namespace) if namespace == mesh_wide_namespace => {
                return Err(PolicyError::Invalid {
                    at: Box::new(origin_only(format!("{KIND} {}", policy.key()))),
                    field: Some("metadata.namespace".to_owned()),
                    location: None,
                    reason: format!(
                        "policies in {mesh_wide_namespace} apply mesh-wide in Kubernetes mode: \
                         leave `namespace` out for a mesh-wide policy, or choose the namespace \
                         of the workloads it is for"
                    ),
                });
            }
            Some(namespace) => namespace,
        };
        let mut document =
            serde_json::to_value(policy).expect("a policy serializes to a JSON value");
        let spec = serde_json::from_value(document["spec"].take())
            .expect("the spec types read every valid policy spec");
        let mut object = Self::new(policy.name(), spec);
        object.metadata.namespace = Some(namespace.to_owned());
        Ok(object)
    }
}

fn origin_only(origin: String) -> Origin {
    Origin {
        origin,
        document: None,
        policy: None,
    }
}

#[cfg(test)]
mod tests;
