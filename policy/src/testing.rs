//! Helpers for this crate's unit tests: policies from a few lines of YAML, and workloads.

use std::collections::BTreeMap;

use ferrule_identity::SpiffeId;

use crate::{Policy, Workload, parse_documents};

pub(crate) fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap_or_else(|e| panic!("test identity {s:?}: {e}"))
}

/// A policy whose `spec` holds `action` and then the YAML lines of `spec_rest`.
pub(crate) fn policy(namespace: Option<&str>, name: &str, action: &str, spec_rest: &str) -> Policy {
    let namespace = namespace.map_or(String::new(), |ns| format!("\n  namespace: {ns}"));
    let spec_rest: String = spec_rest
        .trim()
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect();
    let text = format!(
        "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: \
         {name}{namespace}\nspec:\n  action: {action}\n{spec_rest}"
    );
    let mut policies =
        parse_documents(&text, "test.yaml").unwrap_or_else(|e| panic!("{e}\nin:\n{text}"));
    assert_eq!(policies.len(), 1);
    policies.remove(0)
}

/// An owned destination workload in trust domain `example.org`.
pub(crate) struct Dest {
    pub id: SpiffeId,
    pub namespace: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
}

impl Dest {
    pub fn new(namespace: &str, service_account: &str, labels: &[(&str, &str)]) -> Self {
        Self {
            id: id(&format!(
                "spiffe://example.org/ns/{namespace}/sa/{service_account}"
            )),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn workload(&self) -> Workload<'_> {
        Workload {
            spiffe_id: &self.id,
            namespace: &self.namespace,
            service_account: &self.service_account,
            labels: &self.labels,
        }
    }
}
