//! A policy's `spec`: either rules (`action`, `selector`, `rules`) or a scope's default
//! (`defaultAction` alone).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::de::{checked_map, non_empty_list};

use super::rule::{NO_RULES, Rule};
use super::{Action, Selector};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(super) enum Spec {
    Rules(RulesSpec),
    Default(DefaultSpec),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct RulesSpec {
    pub action: Action,
    #[serde(skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DefaultSpec {
    pub default_action: DefaultAction,
}

/// What happens to requests for a workload that no ALLOW policy selects and no DENY rule
/// matched: the mesh's or a namespace's `defaultAction` (a namespace's overrides the mesh's).
/// Without one, `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    Allow,
    Deny,
}

impl DefaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Allow => "allow",
            DefaultAction::Deny => "deny",
        }
    }
}

impl fmt::Display for DefaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every key the two forms know; which form it is, is decided by `check`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpecFields {
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    selector: Option<Selector>,
    #[serde(default, deserialize_with = "rules")]
    rules: Option<Vec<Rule>>,
    #[serde(default)]
    default_action: Option<DefaultAction>,
}

const DEFAULT_STANDS_ALONE: &str = "`defaultAction` stands alone: it sets the default of the policy's namespace (or, without \
     a namespace, of the mesh) and takes no `action`, `selector` or `rules`; write those in a \
     policy of their own";

impl SpecFields {
    fn check(self) -> Result<Spec, &'static str> {
        if let Some(default_action) = self.default_action {
            if self.action.is_some() || self.selector.is_some() || self.rules.is_some() {
                return Err(DEFAULT_STANDS_ALONE);
            }
            return Ok(Spec::Default(DefaultSpec { default_action }));
        }
        // The same words as serde's, so that the error names the missing field.
        let action = self.action.ok_or("missing field `action`")?;
        let rules = self.rules.ok_or("missing field `rules`")?;
        Ok(Spec::Rules(RulesSpec {
            action,
            selector: self.selector.unwrap_or_default(),
            rules,
        }))
    }
}

fn rules<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Rule>>, D::Error> {
    non_empty_list(d, NO_RULES)
}

impl<'de> Deserialize<'de> for Spec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_map(deserializer, "a policy spec", SpecFields::check)
    }
}
