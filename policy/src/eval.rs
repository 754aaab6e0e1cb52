//! Evaluation: which policies select a destination, and what their rules decide for a request.
//! Allocation-free: it runs for every new stream, and again for every live connection when the
//! policy changes.

use std::collections::BTreeMap;
use std::fmt;

use ferrule_identity::SpiffeId;
use serde::Serialize;

use crate::key::PolicyKey;
use crate::policy::{Action, Policy};

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
}

impl PolicySet {
    /// A later policy with the same key as an earlier one replaces it.
    pub fn new(policies: impl IntoIterator<Item = Policy>) -> Self {
        let by_key: BTreeMap<PolicyKey, Policy> =
            policies.into_iter().map(|p| (p.key(), p)).collect();
        let mut set = Self::default();
        // Key order puts mesh-wide policies first and keeps each list sorted by name.
        for (key, policy) in by_key {
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

    /// True when any policy (of any action) selects `destination`, so it is default deny.
    pub fn selects(&self, destination: &Workload<'_>) -> bool {
        self.in_scope(destination.namespace)
            .any(|p| p.selects(destination))
    }

    /// DENY over AUDIT over ALLOW; then default deny if any policy selects the destination;
    /// else allow. Among rules of one action, the first in (policy key, rule index) order.
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        let destination = &request.destination;
        let local_td = destination.spiffe_id.trust_domain_str();
        let mut selected = false;
        let mut audit = None;
        let mut allow = None;
        for policy in self.in_scope(destination.namespace) {
            if !policy.selects(destination) {
                continue;
            }
            selected = true;
            let slot = match policy.action() {
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
        if let Some((policy, rule)) = audit {
            Decision::rule(Verdict::Audit, policy, rule)
        } else if let Some((policy, rule)) = allow {
            Decision::rule(Verdict::Allow, policy, rule)
        } else if selected {
            Decision {
                verdict: Verdict::Deny,
                cause: Cause::DefaultDeny,
            }
        } else {
            Decision {
                verdict: Verdict::Allow,
                cause: Cause::NoPolicy,
            }
        }
    }
}

/// What the policy decided for a request, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub cause: Cause,
}

impl Decision {
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
/// `{"kind":"no_policy"}`, `{"kind":"default_deny"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// `rule` indexes the policy's `spec.rules`, from 0 like the field paths in errors.
    Rule { policy: PolicyKey, rule: usize },
    /// No policy selects the destination: allowed.
    NoPolicy,
    /// Policies select the destination but none of their rules allows the request.
    DefaultDeny,
}

impl Cause {
    /// A short stable label for metrics and log fields: `shop/deny-legacy#1`, `no_policy`,
    /// `default_deny`.
    pub fn rule_label(&self) -> String {
        match self {
            Cause::Rule { policy, rule } => format!("{policy}#{rule}"),
            Cause::NoPolicy => "no_policy".to_owned(),
            Cause::DefaultDeny => "default_deny".to_owned(),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Rule { policy, rule } => write!(f, "policy {policy}, rule {rule}"),
            Cause::NoPolicy => f.write_str("no policy selects this workload"),
            Cause::DefaultDeny => f.write_str(
                "default deny: policies select this workload and no rule allows the source",
            ),
        }
    }
}

#[cfg(test)]
mod tests;
