use super::*;
use crate::testing::{Dest, id, policy};

const FRONTEND: &str = "spiffe://example.org/ns/web/sa/frontend";
const LEGACY: &str = "spiffe://example.org/ns/legacy/sa/old";

fn decide(set: &PolicySet, source: &str, dest: &Dest, port: u16) -> Decision {
    let source = id(source);
    set.evaluate(&Request {
        source: &source,
        destination: dest.workload(),
        port,
    })
}

/// The decision as `ferrule explain` and the logs show it.
fn explain(set: &PolicySet, source: &str, dest: &Dest, port: u16) -> String {
    decide(set, source, dest, port).to_string()
}

fn allow_from(namespace: Option<&str>, name: &str, from: &str) -> Policy {
    policy(
        namespace,
        name,
        "ALLOW",
        &format!("rules: [{{from: [{from}]}}]"),
    )
}

const DEFAULT_DENY: &str =
    "deny (default deny: policies select this workload and no rule allows the source)";
const NO_POLICY: &str = "allow (no policy selects this workload)";

#[test]
fn without_policies_everything_is_allowed() {
    let api = Dest::new("shop", "api", &[]);
    let decision = decide(&PolicySet::default(), FRONTEND, &api, 8080);
    assert_eq!(decision.verdict, Verdict::Allow);
    assert_eq!(decision.cause, Cause::NoPolicy);
    assert_eq!(decision.to_string(), NO_POLICY);
}

#[test]
fn allow_rule_allows_its_sources_and_the_rest_is_default_denied() {
    let set = PolicySet::new([allow_from(Some("shop"), "allow-web", "{namespace: web}")]);
    let api = Dest::new("shop", "api", &[]);
    assert_eq!(
        explain(&set, FRONTEND, &api, 8080),
        "allow (policy shop/allow-web, rule 0)"
    );
    let decision = decide(&set, LEGACY, &api, 8080);
    assert_eq!(decision.cause, Cause::DefaultDeny);
    assert!(!decision.verdict.allows());
    assert_eq!(decision.to_string(), DEFAULT_DENY);
}

#[test]
fn deny_wins_over_allow_and_audit() {
    let api = Dest::new("shop", "api", &[]);
    let allow = allow_from(Some("shop"), "a-allow", "{namespace: web}");
    let audit = policy(
        Some("shop"),
        "b-audit",
        "AUDIT",
        "rules: [{from: [{namespace: web}]}]",
    );
    let deny = policy(
        Some("shop"),
        "z-deny",
        "DENY",
        "rules: [{ports: [22]}, {from: [{identity: 'spiffe://example.org/ns/web/sa/*'}]}]",
    );
    let set = PolicySet::new([allow, audit, deny]);
    assert_eq!(
        explain(&set, FRONTEND, &api, 8080),
        "deny (policy shop/z-deny, rule 1)"
    );
    assert_eq!(
        explain(&set, LEGACY, &api, 22),
        "deny (policy shop/z-deny, rule 0)"
    );
}

#[test]
fn audit_lets_traffic_through_and_wins_over_allow() {
    let api = Dest::new("shop", "api", &[]);
    let allow = allow_from(
        Some("shop"),
        "a-allow",
        "{namespace: web}, {namespace: legacy}",
    );
    let audit = policy(
        Some("shop"),
        "b-audit",
        "AUDIT",
        "rules: [{from: [{namespace: legacy}]}]",
    );
    let set = PolicySet::new([allow, audit]);
    let decision = decide(&set, LEGACY, &api, 80);
    assert_eq!(decision.verdict, Verdict::Audit);
    assert!(decision.verdict.allows(), "audited traffic passes");
    assert_eq!(decision.to_string(), "audit (policy shop/b-audit, rule 0)");
    assert_eq!(
        explain(&set, FRONTEND, &api, 80),
        "allow (policy shop/a-allow, rule 0)"
    );
}

#[test]
fn any_selecting_policy_makes_the_workload_default_deny() {
    let api = Dest::new("shop", "api", &[]);
    for action in ["DENY", "AUDIT"] {
        let set = PolicySet::new([policy(
            Some("shop"),
            "only",
            action,
            "rules: [{from: [{namespace: legacy}]}]",
        )]);
        assert!(set.selects(&api.workload()));
        assert_eq!(
            explain(&set, FRONTEND, &api, 80),
            DEFAULT_DENY,
            "a {action} policy selects the workload, so unmatched traffic is denied"
        );
    }
}

#[test]
fn policies_of_other_namespaces_do_not_apply() {
    let set = PolicySet::new([allow_from(Some("bank"), "x", "{namespace: web}")]);
    let api = Dest::new("shop", "api", &[]);
    assert!(!set.selects(&api.workload()));
    assert_eq!(explain(&set, LEGACY, &api, 80), NO_POLICY);
}

#[test]
fn mesh_wide_policies_apply_in_every_namespace() {
    let set = PolicySet::new([policy(
        None,
        "deny-legacy",
        "DENY",
        "rules: [{from: [{namespace: legacy}]}]",
    )]);
    for namespace in ["shop", "bank", "web"] {
        let dest = Dest::new(namespace, "api", &[]);
        assert_eq!(
            explain(&set, LEGACY, &dest, 80),
            "deny (policy deny-legacy, rule 0)",
            "in {namespace}"
        );
        assert_eq!(explain(&set, FRONTEND, &dest, 80), DEFAULT_DENY);
    }
}

#[test]
fn selector_by_service_account() {
    let set = PolicySet::new([policy(
        Some("shop"),
        "api-only",
        "ALLOW",
        "selector: {serviceAccount: api}\nrules: [{from: [{namespace: web}]}]",
    )]);
    let api = Dest::new("shop", "api", &[]);
    let cart = Dest::new("shop", "cart", &[]);
    assert_eq!(
        explain(&set, LEGACY, &api, 80),
        DEFAULT_DENY,
        "the policy selects api"
    );
    assert_eq!(
        explain(&set, LEGACY, &cart, 80),
        NO_POLICY,
        "the policy does not select cart"
    );
}

#[test]
fn selector_by_labels_needs_every_pair() {
    let set = PolicySet::new([policy(
        Some("shop"),
        "backend",
        "ALLOW",
        "selector:\n  matchLabels: {app: api, tier: backend}\nrules: [{from: [{namespace: web}]}]",
    )]);
    let selected = Dest::new(
        "shop",
        "x",
        &[("app", "api"), ("tier", "backend"), ("extra", "1")],
    );
    assert!(set.selects(&selected.workload()));
    for labels in [
        &[("app", "api")][..],
        &[("app", "api"), ("tier", "frontend")],
        &[],
    ] {
        let dest = Dest::new("shop", "x", labels);
        assert!(
            !set.selects(&dest.workload()),
            "labels {labels:?} should not be selected"
        );
        assert_eq!(explain(&set, LEGACY, &dest, 80), NO_POLICY);
    }
    let both = PolicySet::new([policy(
        Some("shop"),
        "api-backend",
        "ALLOW",
        "selector: {serviceAccount: api, matchLabels: {tier: backend}}\nrules: [{}]",
    )]);
    assert!(both.selects(&Dest::new("shop", "api", &[("tier", "backend")]).workload()));
    assert!(!both.selects(&Dest::new("shop", "cart", &[("tier", "backend")]).workload()));
}

#[test]
fn ports_restrict_a_rule() {
    let set = PolicySet::new([policy(
        Some("shop"),
        "web-http",
        "ALLOW",
        "rules: [{from: [{namespace: web}], ports: [80, 8000-8100]}]",
    )]);
    let api = Dest::new("shop", "api", &[]);
    for (port, allowed) in [
        (80, true),
        (81, false),
        (8000, true),
        (8100, true),
        (8101, false),
    ] {
        assert_eq!(
            decide(&set, FRONTEND, &api, port).verdict.allows(),
            allowed,
            "port {port}"
        );
    }
}

#[test]
fn later_policy_with_the_same_key_replaces_the_earlier() {
    let first = allow_from(Some("shop"), "p", "{namespace: web}");
    let second = allow_from(Some("shop"), "p", "{namespace: legacy}");
    let mesh_wide = allow_from(None, "p", "{namespace: batch}");
    let set = PolicySet::new([first, second.clone(), mesh_wide]);
    assert_eq!(set.len(), 2, "shop/p replaced; p is a different policy");
    assert_eq!(set.get(&"shop/p".parse().unwrap()), Some(&second));
    let api = Dest::new("shop", "api", &[]);
    assert_eq!(explain(&set, FRONTEND, &api, 80), DEFAULT_DENY);
    assert_eq!(
        explain(&set, LEGACY, &api, 80),
        "allow (policy shop/p, rule 0)"
    );
}

#[test]
fn the_first_match_in_key_then_rule_order_is_reported() {
    let api = Dest::new("shop", "api", &[]);
    let web = "{namespace: web}";
    let set = PolicySet::new([
        allow_from(Some("shop"), "b", web),
        allow_from(Some("shop"), "a", web),
        policy(
            Some("shop"),
            "0",
            "ALLOW",
            "rules: [{ports: [1]}, {from: [{namespace: web}]}, {}]",
        ),
    ]);
    assert_eq!(
        explain(&set, FRONTEND, &api, 80),
        "allow (policy shop/0, rule 1)"
    );
    let with_mesh_wide =
        PolicySet::new(set.policies().cloned().chain([allow_from(None, "z", web)]));
    assert_eq!(
        explain(&with_mesh_wide, FRONTEND, &api, 80),
        "allow (policy z, rule 0)",
        "mesh-wide policies come first in key order"
    );
}

#[test]
fn policies_iterate_in_key_order() {
    let set = PolicySet::new([
        allow_from(Some("shop"), "b", "{namespace: web}"),
        allow_from(Some("bank"), "a", "{namespace: web}"),
        allow_from(None, "z", "{namespace: web}"),
        allow_from(Some("shop"), "a", "{namespace: web}"),
    ]);
    let keys: Vec<String> = set.policies().map(|p| p.key().to_string()).collect();
    assert_eq!(keys, ["z", "bank/a", "shop/a", "shop/b"]);
    assert!(!set.is_empty());
    assert!(PolicySet::default().is_empty());
}

#[test]
fn causes_have_stable_labels_and_json() {
    let set = PolicySet::new([policy(
        Some("shop"),
        "deny-legacy",
        "DENY",
        "rules: [{ports: [22]}, {from: [{namespace: legacy}]}]",
    )]);
    let api = Dest::new("shop", "api", &[]);
    let denied = decide(&set, LEGACY, &api, 80);
    assert_eq!(denied.cause.rule_label(), "shop/deny-legacy#1");
    assert_eq!(Cause::NoPolicy.rule_label(), "no_policy");
    assert_eq!(Cause::DefaultDeny.rule_label(), "default_deny");
    assert_eq!(
        serde_json::to_string(&denied).unwrap(),
        r#"{"verdict":"deny","cause":{"kind":"rule","policy":"shop/deny-legacy","rule":1}}"#
    );
    assert_eq!(
        serde_json::to_string(&decide(&set, FRONTEND, &api, 80)).unwrap(),
        r#"{"verdict":"deny","cause":{"kind":"default_deny"}}"#
    );
    assert_eq!(
        serde_json::to_string(&decide(&PolicySet::default(), FRONTEND, &api, 80)).unwrap(),
        r#"{"verdict":"allow","cause":{"kind":"no_policy"}}"#
    );
    assert_eq!(Verdict::Audit.as_str(), "audit");
}
