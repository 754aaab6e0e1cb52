//! `AuthorizationPolicy` YAML files (`ferrule policy apply`, the control plane's API, CRDs):
//! parsing and its error messages (which point at a line and column of the input), the JSON
//! and YAML round trips, and a decision over whatever parsed.
#![no_main]

use std::collections::BTreeMap;

use ferrule_identity::SpiffeId;
use ferrule_policy::{Policy, PolicySet, Request, Workload, parse_documents, to_yaml_documents};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policies = match parse_documents(text, "fuzz.yaml") {
        Ok(policies) => policies,
        Err(error) => return drop(error.to_string()),
    };
    for policy in &policies {
        let json = policy.to_json();
        let back = Policy::from_json(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(&back, policy, "JSON round trip");
    }
    let yaml = to_yaml_documents(&policies);
    let back = parse_documents(&yaml, "round trip").unwrap_or_else(|e| panic!("{yaml}: {e}"));
    assert_eq!(back, policies, "YAML round trip");
    decide(policies);
});

/// Every policy's namespace asks one question of the whole set.
fn decide(policies: Vec<Policy>) {
    let source = SpiffeId::parse("spiffe://example.org/ns/web/sa/frontend").unwrap();
    let labels = BTreeMap::from([("app".to_owned(), "api".to_owned())]);
    let namespaces: Vec<String> = policies
        .iter()
        .map(|p| p.namespace().unwrap_or("default").to_owned())
        .collect();
    let set = PolicySet::new(policies);
    for namespace in &namespaces {
        let Ok(id) = SpiffeId::parse(&format!("spiffe://example.org/ns/{namespace}/sa/api")) else {
            continue;
        };
        let destination = Workload {
            spiffe_id: &id,
            namespace,
            service_account: "api",
            labels: &labels,
        };
        let request = Request {
            source: &source,
            destination,
            port: 8080,
        };
        drop(set.evaluate(&request).to_string());
    }
}
