//! Evaluation: which policies select a destination, and what their rules decide for a request.
//! Allocation-free: it runs for every new stream, and again for every live connection when the
//! policy changes.

use std::collections::BTreeMap;
use std::fmt;

use ferrule_identity::SpiffeId;
use serde::Serialize;

use crate::key::PolicyKey;
use crate::policy::{Action, DefaultAction, Policy};

/// The destination workload of a request, as the destination node knows it.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub spiffe_id: &'a SpiffeId,
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// A connection to authorize: the peer's verified identity, the workload it reaches and the
/// destination port.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub source: &'a SpiffeId,
    pub destination: Workload<'a>,
    pub port: u16,
}

/// All policies in force, indexed by namespace.
#[derive(Debug, Default, Clone)]
pub struct PolicySet {
    /// Policies without a namespace, sorted by name.
    mesh_wide: Vec<Policy>,
    /// Namespaced policies by namespace, each list sorted by name.
    by_namespace: BTreeMap<String, Vec<Policy>>,
    /// The mesh's `defaultAction`, if a mesh-wide document sets one.
    mesh_default: Option<ScopeDefault>,
    /// Namespaces' `defaultAction`s; each overrides the mesh's.
    namespace_defaults: BTreeMap<String, ScopeDefault>,
}

/// The default of one scope and the document that sets it.
#[derive(Debug, Clone)]
struct ScopeDefault {
    action: DefaultAction,
    policy: PolicyKey,
}

impl PolicySet {
    /// A later policy with the same key as an earlier one replaces it.
    pub fn new(policies: impl IntoIterator<Item = Policy>) -> Self {
        let by_key: BTreeMap<PolicyKey, Policy> =
            policies.into_iter().map(|p| (p.key(), p)).collect();
        let mut set = Self::default();
        // Key order puts mesh-wide policies first and keeps each list sorted by name.
        for (key, policy) in by_key {
            if let Some(action) = policy.default_action() {
                set.add_default(action, key.clone());
            }
            match key.namespace() {
                None => set.mesh_wide.push(policy),
                Some(ns) => set
                    .by_namespace
                    .entry(ns.to_owned())
                    .or_default()
                    .push(policy),
            }
        }
        set
    }

    /// Several documents may set one scope's default: `deny` wins (the safe side), and among
    /// equals the first in key order, so the answer does not depend on the order of arrival.
    fn add_default(&mut self, action: DefaultAction, policy: PolicyKey) {
        let current = match policy.namespace() {
            None => self.mesh_default.as_ref(),
            Some(ns) => self.namespace_defaults.get(ns),
        };
        // Keys arrive in order: an earlier document stays unless this one denies where it allowed.
        if current
            .is_some_and(|c| c.action == DefaultAction::Deny || action == DefaultAction::Allow)
        {
            return;
        }
        match policy.namespace() {
            None => self.mesh_default = Some(ScopeDefault { action, policy }),
            Some(ns) => {
                let ns = ns.to_owned();
                self.namespace_defaults
                    .insert(ns, ScopeDefault { action, policy });
            }
        }
    }

    /// The default for workloads of `namespace`: its own, else the mesh's.
    fn default_for(&self, namespace: &str) -> Option<&ScopeDefault> {
        self.namespace_defaults
            .get(namespace)
            .or(self.mesh_default.as_ref())
    }

    /// All policies, in key order.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.mesh_wide
            .iter()
            .chain(self.by_namespace.values().flatten())
    }

    pub fn get(&self, key: &PolicyKey) -> Option<&Policy> {
        let list = match key.namespace() {
            None => &self.mesh_wide,
            Some(ns) => self.by_namespace.get(ns)?,
        };
        list.iter().find(|p| p.name() == key.name())
    }

    pub fn len(&self) -> usize {
        self.mesh_wide.len() + self.by_namespace.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.mesh_wide.is_empty() && self.by_namespace.is_empty()
    }

    /// Policies that could apply to workloads in `namespace`, in key order.
    fn in_scope<'s>(&'s self, namespace: &str) -> impl Iterator<Item = &'s Policy> {
        let namespaced = self
            .by_namespace
            .get(namespace)
            .map_or(&[][..], Vec::as_slice);
        self.mesh_wide.iter().chain(namespaced)
    }

    /// True when an ALLOW policy selects `destination`, so what no ALLOW rule admits is denied.
    pub fn allow_selects(&self, destination: &Workload<'_>) -> bool {
        self.in_scope(destination.namespace)
            .any(|p| p.action() == Some(Action::Allow) && p.selects(destination))
    }

    /// DENY rules first; then ALLOW: a matching rule allows, and a workload any ALLOW policy
    /// selects denies the rest (default deny); then the scope's `defaultAction`; else allow.
    /// AUDIT never changes whether a request passes: a matching AUDIT rule turns an allowed
    /// verdict into `audit`. Among rules of one action, the first in (policy key, rule index)
    /// order.
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        let destination = &request.destination;
        let local_td = destination.spiffe_id.trust_domain_str();
        let mut allow_selects = false;
        let mut audit = None;
        let mut allow = None;
        for policy in self.in_scope(destination.namespace) {
            let Some(action) = policy.action() else {
                continue;
            };
            if !policy.selects(destination) {
                continue;
            }
            allow_selects |= action == Action::Allow;
            let slot = match action {
                Action::Deny => None,
                Action::Audit if audit.is_some() => continue,
                Action::Audit => Some(&mut audit),
                Action::Allow if allow.is_some() => continue,
                Action::Allow => Some(&mut allow),
            };
            let Some(rule) = policy
                .rules()
                .iter()
                .position(|r| r.matches(request.source, local_td, request.port))
            else {
                continue;
            };
            match slot {
                // Policies come in key order, so the first matching DENY is the answer.
                None => return Decision::rule(Verdict::Deny, policy, rule),
                Some(slot) => *slot = Some((policy, rule)),
            }
        }
        let decision = match allow {
            Some((policy, rule)) => Decision::rule(Verdict::Allow, policy, rule),
            None if allow_selects => Decision::new(Verdict::Deny, Cause::DefaultDeny),
            None => self.default_decision(destination.namespace),
        };
        match audit {
            Some((policy, rule)) if decision.verdict.allows() => {
                Decision::rule(Verdict::Audit, policy, rule)
            }
            _ => decision,
        }
    }

    /// For a workload no ALLOW policy selects.
    fn default_decision(&self, namespace: &str) -> Decision {
        let Some(default) = self.default_for(namespace) else {
            return Decision::new(Verdict::Allow, Cause::NoPolicy);
        };
        let verdict = match default.action {
            DefaultAction::Allow => Verdict::Allow,
            DefaultAction::Deny => Verdict::Deny,
        };
        Decision::new(
            verdict,
            Cause::DefaultAction {
                action: default.action,
                policy: default.policy.clone(),
            },
        )
    }
}

/// What the policy decided for a request, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub cause: Cause,
}

impl Decision {
    fn new(verdict: Verdict, cause: Cause) -> Self {
        Self { verdict, cause }
    }

    fn rule(verdict: Verdict, policy: &Policy, rule: usize) -> Self {
        Self {
            verdict,
            cause: Cause::Rule {
                policy: policy.key(),
                rule,
            },
        }
    }
}

impl fmt::Display for Decision {
    /// `deny (policy shop/deny-legacy, rule 1)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.verdict, self.cause)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
    /// Allowed, but logged as if denied.
    Audit,
}

impl Verdict {
    /// Whether the connection may proceed (true for `Audit`).
    pub fn allows(self) -> bool {
        !matches!(self, Verdict::Deny)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Audit => "audit",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request got its verdict. JSON: `{"kind":"rule","policy":"shop/x","rule":0}`,
/// `{"kind":"default_action","action":"deny","policy":"shop/zero-trust"}`,
/// `{"kind":"no_policy"}`, `{"kind":"default_deny"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// `rule` indexes the policy's `spec.rules`, from 0 like the field paths in errors.
    Rule { policy: PolicyKey, rule: usize },
    /// No ALLOW policy selects the destination and its scope has no `defaultAction`: allowed.
    NoPolicy,
    /// ALLOW policies select the destination but none of their rules matches the request.
    DefaultDeny,
    /// No ALLOW policy selects the destination: the `defaultAction` of its namespace (or of
    /// the mesh, when `policy` has no namespace) decides.
    DefaultAction {
        action: DefaultAction,
        policy: PolicyKey,
    },
}

impl Cause {
    /// A short stable label for metrics and log fields: `shop/deny-legacy#1`, `no_policy`,
    /// `default_deny`, `shop/zero-trust#default`.
    pub fn rule_label(&self) -> String {
        match self {
            Cause::Rule { policy, rule } => format!("{policy}#{rule}"),
            Cause::NoPolicy => "no_policy".to_owned(),
            Cause::DefaultDeny => "default_deny".to_owned(),
            Cause::DefaultAction { policy, .. } => format!("{policy}#default"),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Rule { policy, rule } => write!(f, "policy {policy}, rule {rule}"),
            Cause::NoPolicy => {
                f.write_str("no ALLOW policy selects this workload and no defaultAction is set")
            }
            Cause::DefaultDeny => f.write_str(
                "default deny: ALLOW policies select this workload and none of their rules \
                 matches",
            ),
            Cause::DefaultAction { action, policy } => {
                write!(f, "default action {action} of ")?;
                match policy.namespace() {
                    Some(namespace) => write!(f, "namespace {namespace}")?,
                    None => f.write_str("the mesh")?,
                }
                write!(f, ", set by policy {policy}")
            }
        }
    }
}

#[cfg(test)]
mod tests;
