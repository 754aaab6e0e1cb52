//! The validated `AuthorizationPolicy` document. Deserializing *is* validating: every field type
//! checks itself, so YAML from a file, JSON from the control plane's store and JSON pushed to an
//! agent all pass through the same checks and fail at the offending field's path.

mod port;
mod rule;
mod spec;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::de::unique_keys;
use crate::eval::Workload;
use crate::key::PolicyKey;
use crate::names::{DnsLabel, DnsSubdomain, LabelKey, LabelValue};

pub use port::{PortError, PortRange};
pub use rule::{IdentityMatch, Rule, Source};
pub use spec::DefaultAction;

use spec::{RulesSpec, Spec};

pub const API_VERSION: &str = "ferrule.dev/v1alpha1";
pub const KIND: &str = "AuthorizationPolicy";

/// One `AuthorizationPolicy`, validated. See the crate documentation for the format and what
/// each field means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    api_version: ApiVersion,
    kind: Kind,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: DnsLabel,
    /// Absent: a mesh-wide policy, for workloads in every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<DnsLabel>,
}

/// What a matching rule does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Allow,
    Deny,
    /// Let the request through, but log it as if it had been denied.
    Audit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which destination workloads (within the policy's namespace, or all namespaces) the policy
/// applies to. Empty: every workload in scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_account: Option<DnsSubdomain>,
    #[serde(
        default,
        deserialize_with = "unique_keys",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    match_labels: BTreeMap<LabelKey, LabelValue>,
}

impl Selector {
    const EMPTY: Selector = Selector {
        service_account: None,
        match_labels: BTreeMap::new(),
    };

    pub fn service_account(&self) -> Option<&str> {
        self.service_account.as_ref().map(DnsSubdomain::as_str)
    }

    pub fn match_labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.match_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when the selector selects every workload.
    pub fn is_empty(&self) -> bool {
        self.service_account.is_none() && self.match_labels.is_empty()
    }

    pub fn matches(&self, workload: &Workload<'_>) -> bool {
        self.service_account
            .as_ref()
            .is_none_or(|sa| sa.as_str() == workload.service_account)
            && self.match_labels.iter().all(|(key, value)| {
                workload
                    .labels
                    .get(key.as_str())
                    .is_some_and(|v| v == value.as_str())
            })
    }
}

impl Policy {
    pub fn key(&self) -> PolicyKey {
        PolicyKey::from_labels(self.metadata.namespace.clone(), self.metadata.name.clone())
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_str()
    }

    /// `None` for a mesh-wide policy.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_ref().map(DnsLabel::as_str)
    }

    /// `None` for a default-action document.
    pub fn action(&self) -> Option<Action> {
        self.rules_spec().map(|spec| spec.action)
    }

    /// `Some` for a document that sets the default of its scope (its namespace, or the mesh).
    pub fn default_action(&self) -> Option<DefaultAction> {
        match &self.spec {
            Spec::Default(spec) => Some(spec.default_action),
            Spec::Rules(_) => None,
        }
    }

    /// Empty (selects every workload in scope) for a default-action document.
    pub fn selector(&self) -> &Selector {
        static EVERY_WORKLOAD: Selector = Selector::EMPTY;
        self.rules_spec()
            .map_or(&EVERY_WORKLOAD, |spec| &spec.selector)
    }

    /// Never empty for a rules policy; empty for a default-action document. `Cause::Rule {
    /// rule }` indexes this slice.
    pub fn rules(&self) -> &[Rule] {
        self.rules_spec().map_or(&[], |spec| &spec.rules)
    }

    fn rules_spec(&self) -> Option<&RulesSpec> {
        match &self.spec {
            Spec::Rules(spec) => Some(spec),
            Spec::Default(_) => None,
        }
    }

    /// True when the policy applies to `workload`: it is mesh-wide or in the workload's
    /// namespace, and its selector matches.
    pub fn selects(&self, workload: &Workload<'_>) -> bool {
        self.namespace().is_none_or(|ns| ns == workload.namespace)
            && self.selector().matches(workload)
    }
}

/// `null` (e.g. `selector:` with nothing after it) means the same as leaving the field out.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A field that must hold exactly one string value (`apiVersion`, `kind`).
macro_rules! constant_field {
    ($name:ident, $value:expr) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        struct $name;

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str($value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let found = String::deserialize(deserializer)?;
                if found == $value {
                    Ok($name)
                } else {
                    Err(serde::de::Error::custom(wrong_constant($value, &found)))
                }
            }
        }
    };
}

constant_field!(ApiVersion, API_VERSION);
constant_field!(Kind, KIND);

/// The message for a wrong `apiVersion` or `kind`; also used when a document fails for another
/// reason first, since a document of another kind fails on everything else too.
pub(crate) fn wrong_constant(expected: &str, found: &str) -> String {
    format!(
        "expected {expected:?}, found {found:?}: policy files hold only {API_VERSION} {KIND} \
         documents"
    )
}

#[cfg(test)]
mod tests;
