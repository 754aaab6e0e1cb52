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
    "deny (default deny: ALLOW policies select this workload and none of their rules matches)";
const NO_POLICY: &str = "allow (no ALLOW policy selects this workload and no defaultAction is set)";

fn default_action(namespace: Option<&str>, name: &str, action: &str) -> Policy {
    let namespace = namespace.map_or(String::new(), |ns| format!("\n  namespace: {ns}"));
    let text = format!(
        "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: \
         {name}{namespace}\nspec:\n  defaultAction: {action}\n"
    );
    crate::parse_documents(&text, "test.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0)
}

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

/// Issue 12 finding 8e: any policy that selected a workload, DENY or AUDIT included, turned on
/// default deny for it, so a DENY meant for one caller cut off every other one.
#[test]
fn deny_or_audit_alone_decides_only_what_it_names() {
    let api = Dest::new("shop", "api", &[]);
    let deny = policy(
        Some("shop"),
        "block-legacy",
        "DENY",
        "rules: [{from: [{namespace: legacy}]}]",
    );
    let set = PolicySet::new([deny.clone()]);
    assert!(!set.allow_selects(&api.workload()));
    assert_eq!(
        explain(&set, LEGACY, &api, 80),
        "deny (policy shop/block-legacy, rule 0)"
    );
    assert_eq!(
        explain(&set, FRONTEND, &api, 80),
        NO_POLICY,
        "a DENY for legacy leaves other callers alone"
    );
    let audit = policy(
        Some("shop"),
        "watch-legacy",
        "AUDIT",
        "rules: [{from: [{namespace: legacy}]}]",
    );
    let set = PolicySet::new([audit]);
    assert_eq!(
        explain(&set, LEGACY, &api, 80),
        "audit (policy shop/watch-legacy, rule 0)"
    );
    assert_eq!(explain(&set, FRONTEND, &api, 80), NO_POLICY);
}

#[test]
fn audit_never_lets_through_what_the_rest_refuses() {
    let api = Dest::new("shop", "api", &[]);
    let allow = allow_from(Some("shop"), "a-allow", "{namespace: web}");
    let audit = policy(
        Some("shop"),
        "b-audit",
        "AUDIT",
        "rules: [{from: [{namespace: legacy}]}]",
    );
    let set = PolicySet::new([allow, audit.clone()]);
    assert_eq!(explain(&set, LEGACY, &api, 80), DEFAULT_DENY);
    let set = PolicySet::new([default_action(Some("shop"), "zt", "deny"), audit]);
    assert_eq!(
        decide(&set, LEGACY, &api, 80).verdict,
        Verdict::Deny,
        "the namespace's default deny holds for audited sources too"
    );
}

#[test]
fn default_action_deny_of_the_mesh_or_a_namespace() {
    let api = Dest::new("shop", "api", &[]);
    let blog = Dest::new("web", "blog", &[]);
    let mesh = PolicySet::new([default_action(None, "zero-trust", "deny")]);
    for dest in [&api, &blog] {
        let decision = decide(&mesh, FRONTEND, dest, 80);
        assert_eq!(decision.verdict, Verdict::Deny);
        assert_eq!(
            decision.to_string(),
            "deny (default action deny of the mesh, set by policy zero-trust)"
        );
        assert_eq!(decision.cause.rule_label(), "zero-trust#default");
    }
    let namespace = PolicySet::new([default_action(Some("shop"), "zero-trust", "deny")]);
    assert_eq!(
        explain(&namespace, FRONTEND, &api, 80),
        "deny (default action deny of namespace shop, set by policy shop/zero-trust)"
    );
    assert_eq!(explain(&namespace, FRONTEND, &blog, 80), NO_POLICY);
}

#[test]
fn default_action_lets_allow_and_deny_rules_decide_first() {
    let api = Dest::new("shop", "api", &[]);
    let cart = Dest::new("shop", "cart", &[]);
    let set = PolicySet::new([
        default_action(None, "zero-trust", "deny"),
        policy(
            Some("shop"),
            "api",
            "ALLOW",
            "selector: {serviceAccount: api}\nrules: [{from: [{namespace: web}]}]",
        ),
    ]);
    assert_eq!(
        explain(&set, FRONTEND, &api, 80),
        "allow (policy shop/api, rule 0)"
    );
    assert_eq!(explain(&set, LEGACY, &api, 80), DEFAULT_DENY);
    assert_eq!(
        explain(&set, FRONTEND, &cart, 80),
        "deny (default action deny of the mesh, set by policy zero-trust)"
    );
    let open = PolicySet::new([
        default_action(None, "open", "allow"),
        policy(
            Some("shop"),
            "block",
            "DENY",
            "rules: [{from: [{namespace: legacy}]}]",
        ),
    ]);
    assert_eq!(
        explain(&open, LEGACY, &cart, 80),
        "deny (policy shop/block, rule 0)"
    );
    assert_eq!(
        explain(&open, FRONTEND, &cart, 80),
        "allow (default action allow of the mesh, set by policy open)"
    );
}

#[test]
fn a_namespace_default_overrides_the_mesh_default() {
    let api = Dest::new("shop", "api", &[]);
    let blog = Dest::new("web", "blog", &[]);
    let set = PolicySet::new([
        default_action(None, "zero-trust", "deny"),
        default_action(Some("web"), "public", "allow"),
    ]);
    assert_eq!(
        explain(&set, LEGACY, &blog, 80),
        "allow (default action allow of namespace web, set by policy web/public)"
    );
    assert_eq!(decide(&set, LEGACY, &api, 80).verdict, Verdict::Deny);
    let set = PolicySet::new([
        default_action(None, "open", "allow"),
        default_action(Some("shop"), "zero-trust", "deny"),
    ]);
    assert_eq!(decide(&set, LEGACY, &api, 80).verdict, Verdict::Deny);
    assert_eq!(decide(&set, LEGACY, &blog, 80).verdict, Verdict::Allow);
}

#[test]
fn of_two_defaults_in_one_scope_deny_wins() {
    let api = Dest::new("shop", "api", &[]);
    for order in [["a", "b"], ["b", "a"]] {
        let set = PolicySet::new([
            default_action(Some("shop"), order[0], "allow"),
            default_action(Some("shop"), order[1], "deny"),
        ]);
        assert_eq!(
            explain(&set, LEGACY, &api, 80),
            format!(
                "deny (default action deny of namespace shop, set by policy shop/{})",
                order[1]
            )
        );
    }
    let set = PolicySet::new([
        default_action(Some("shop"), "b", "deny"),
        default_action(Some("shop"), "a", "deny"),
    ]);
    assert_eq!(
        decide(&set, LEGACY, &api, 80).cause.rule_label(),
        "shop/a#default",
        "among equals, the first in key order"
    );
}

#[test]
fn policies_of_other_namespaces_do_not_apply() {
    let set = PolicySet::new([allow_from(Some("bank"), "x", "{namespace: web}")]);
    let api = Dest::new("shop", "api", &[]);
    assert!(!set.allow_selects(&api.workload()));
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
        assert_eq!(explain(&set, FRONTEND, &dest, 80), NO_POLICY);
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
    assert!(set.allow_selects(&selected.workload()));
    for labels in [
        &[("app", "api")][..],
        &[("app", "api"), ("tier", "frontend")],
        &[],
    ] {
        let dest = Dest::new("shop", "x", labels);
        assert!(
            !set.allow_selects(&dest.workload()),
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
    assert!(both.allow_selects(&Dest::new("shop", "api", &[("tier", "backend")]).workload()));
    assert!(!both.allow_selects(&Dest::new("shop", "cart", &[("tier", "backend")]).workload()));
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
    let allow = PolicySet::new([allow_from(Some("shop"), "web", "{namespace: web}")]);
    assert_eq!(
        serde_json::to_string(&decide(&allow, LEGACY, &api, 80)).unwrap(),
        r#"{"verdict":"deny","cause":{"kind":"default_deny"}}"#
    );
    let zero_trust = PolicySet::new([default_action(Some("shop"), "zt", "deny")]);
    assert_eq!(
        serde_json::to_string(&decide(&zero_trust, LEGACY, &api, 80)).unwrap(),
        r#"{"verdict":"deny","cause":{"kind":"default_action","action":"deny","policy":"shop/zt"}}"#
    );
    assert_eq!(
        serde_json::to_string(&decide(&PolicySet::default(), FRONTEND, &api, 80)).unwrap(),
        r#"{"verdict":"allow","cause":{"kind":"no_policy"}}"#
    );
    assert_eq!(Verdict::Audit.as_str(), "audit");
}
