use super::*;
use crate::testing::{Dest, id};
use crate::{Action, PolicySet, Request};

const EXAMPLE: &str = include_str!("../../examples/shop.yaml");

/// `apiVersion`, `kind` and `metadata` of policy `shop/web`, followed by `spec`.
fn doc(spec: &str) -> String {
    format!(
        "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: web\n  \
         namespace: shop\nspec:\n{spec}"
    )
}

fn error(text: &str) -> String {
    match parse_documents(text, "shop.yaml") {
        Ok(policies) => panic!(
            "expected an error, got {} policies from:\n{text}",
            policies.len()
        ),
        Err(e) => e.to_string(),
    }
}

const AT: &str = "shop.yaml: document 1 (policy shop/web)";

#[test]
fn parses_every_document_of_the_example() {
    let policies = parse_documents(EXAMPLE, "shop.yaml").unwrap();
    let keys: Vec<String> = policies.iter().map(|p| p.key().to_string()).collect();
    assert_eq!(
        keys,
        [
            "shop/zero-trust",
            "shop/deny-legacy",
            "shop/api-ingress",
            "shop/payments-ingress",
            "shop/audit-partner"
        ]
    );
    let actions: Vec<Action> = policies.iter().filter_map(Policy::action).collect();
    assert_eq!(
        actions,
        [Action::Deny, Action::Allow, Action::Allow, Action::Audit]
    );
    assert_eq!(
        policies[0].default_action(),
        Some(crate::DefaultAction::Deny)
    );
    assert!(policies[0].rules().is_empty());
    let api = &policies[2];
    assert_eq!(api.selector().service_account(), Some("api"));
    assert_eq!(
        api.selector().match_labels().collect::<Vec<_>>(),
        [("app.kubernetes.io/name", "api"), ("tier", "backend")]
    );
    assert_eq!(api.rules().len(), 2);
    assert_eq!(api.rules()[1].ports().unwrap()[0].to_string(), "9000-9100");
}

#[test]
fn the_example_decides_as_its_comments_say() {
    let set = PolicySet::new(parse_documents(EXAMPLE, "shop.yaml").unwrap());
    let api = Dest::new(
        "shop",
        "api",
        &[("app.kubernetes.io/name", "api"), ("tier", "backend")],
    );
    let payments = Dest::new("shop", "payments", &[]);
    let cart = Dest::new("shop", "cart", &[]);
    let blog = Dest::new("web", "blog", &[]);
    let decide = |source: &str, dest: &Dest, port: u16| {
        let source = id(source);
        set.evaluate(&Request {
            source: &source,
            destination: dest.workload(),
            port,
        })
        .to_string()
    };
    let frontend = "spiffe://example.org/ns/web/sa/frontend";
    assert_eq!(
        decide(frontend, &api, 8080),
        "allow (policy shop/api-ingress, rule 0)"
    );
    assert_eq!(
        decide(frontend, &api, 9000),
        "deny (default deny: ALLOW policies select this workload and none of their rules matches)"
    );
    assert_eq!(
        decide("spiffe://example.org/ns/batch/sa/export", &api, 9050),
        "allow (policy shop/api-ingress, rule 1)"
    );
    assert_eq!(
        decide("spiffe://example.org/ns/legacy/sa/old", &payments, 443),
        "deny (policy shop/deny-legacy, rule 0)"
    );
    assert_eq!(
        decide("spiffe://partner.org/ns/checkout/sa/pay", &payments, 443),
        "audit (policy shop/audit-partner, rule 0)"
    );
    assert_eq!(
        decide("spiffe://example.org/ns/shop/sa/cart", &payments, 443),
        "allow (policy shop/payments-ingress, rule 0)"
    );
    assert_eq!(
        decide("spiffe://example.org/ns/shop/sa/cart", &payments, 80),
        "deny (default deny: ALLOW policies select this workload and none of their rules matches)"
    );
    assert_eq!(
        decide(frontend, &cart, 8080),
        "deny (default action deny of namespace shop, set by policy shop/zero-trust)",
        "no ALLOW policy selects cart: the namespace's default decides"
    );
    assert_eq!(
        decide("spiffe://partner.org/ns/other/sa/x", &payments, 443),
        "deny (default deny: ALLOW policies select this workload and none of their rules matches)",
        "audit-partner names the source, but AUDIT lets through nothing the rest refuses"
    );
    assert_eq!(
        decide("spiffe://example.org/ns/legacy/sa/old", &blog, 80),
        "allow (no ALLOW policy selects this workload and no defaultAction is set)"
    );
}

#[test]
fn round_trips_through_json_and_yaml() {
    let policies = parse_documents(EXAMPLE, "shop.yaml").unwrap();
    for policy in &policies {
        let json = policy.to_json();
        let from_json = Policy::from_json(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(&from_json, policy, "JSON round trip of {}", policy.key());
        assert_eq!(from_json.to_json(), json, "the JSON form is canonical");

        let yaml = policy.to_yaml();
        let from_yaml =
            parse_documents(&yaml, "get.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(
            from_yaml,
            std::slice::from_ref(policy),
            "YAML round trip of:\n{yaml}"
        );
    }
    let all = to_yaml_documents(&policies);
    assert_eq!(parse_documents(&all, "get.yaml").unwrap(), policies);
}

#[test]
fn json_form_is_compact_canonical_and_leaves_out_what_is_absent() {
    let text = doc(
        "  action: ALLOW\n  selector: {}\n  rules:\n    - from: []\n      ports: [\"80\", 90-91, \"7-7\"]\n",
    );
    let policy = &parse_documents(&text, "x.yaml").unwrap()[0];
    assert_eq!(
        policy.to_json(),
        r#"{"apiVersion":"ferrule.dev/v1alpha1","kind":"AuthorizationPolicy","metadata":{"name":"web","namespace":"shop"},"spec":{"action":"ALLOW","rules":[{"ports":[80,"90-91",7]}]}}"#
    );
}

#[test]
fn yaml_form_is_the_input_shape() {
    let text = "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: \
                api-ingress\n  namespace: shop\nspec:\n  action: ALLOW\n  selector:\n    \
                serviceAccount: api\n    matchLabels:\n      tier: backend\n  rules:\n  - from:\n    \
                - identity: spiffe://example.org/ns/web/sa/*\n    - namespace: checkout\n      \
                trustDomain: partner.org\n    ports:\n    - 8080\n    - 9000-9100\n";
    let policy = &parse_documents(text, "x.yaml").unwrap()[0];
    assert_eq!(policy.to_yaml(), text);
}

#[test]
fn empty_documents_are_skipped_but_counted() {
    let one = doc("  action: ALLOW\n  rules: [{}]\n");
    let text = format!("---\n# nothing here\n---\n{one}---\n");
    assert_eq!(parse_documents(&text, "x.yaml").unwrap().len(), 1);
    let broken = format!("{one}---\n---\n{}", doc("  action: ALLOW\n"));
    assert!(
        error(&broken).starts_with("shop.yaml: document 3 (policy shop/web): "),
        "{}",
        error(&broken)
    );
}

#[test]
fn refuses_a_yaml_syntax_error_with_line_and_column() {
    let good = doc("  action: ALLOW\n  rules: [{}]\n").replace("name: web", "name: ok");
    let text = format!(
        "{good}---\n{}",
        doc("  action: ALLOW\n  rules:\n    - from: [{namespace: web}\n      ports: [80]\n")
    );
    assert_eq!(
        error(&text),
        "shop.yaml: document 2: YAML syntax error at line 19 column 7: did not find expected ',' \
         or ']', while parsing a flow sequence at line 18 column 13"
    );
}

#[test]
fn refuses_an_unknown_field() {
    let text = doc("  action: ALLOW\n  rules:\n    - from: [{namespace: web}]\n      to: [80]\n");
    assert_eq!(
        error(&text),
        format!(
            "{AT}: field spec.rules[0].to (line 10 column 7): unknown field `to`, expected \
             `from` or `ports`"
        )
    );
    let text = doc("  action: ALLOW\n  rules: [{}]\n")
        .replace("  name: web\n", "  name: web\n  labels: {a: b}\n");
    assert_eq!(
        error(&text),
        format!(
            "{AT}: field metadata.labels (line 5 column 3): unknown field `labels`, expected \
             `name` or `namespace`"
        )
    );
}

#[test]
fn refuses_a_bad_spiffe_id() {
    let text = doc(
        "  action: ALLOW\n  rules:\n    - from:\n        - identity: spiffe://Example.org/ns/web/sa/x\n",
    );
    assert_eq!(
        error(&text),
        format!(
            "{AT}: field spec.rules[0].from[0].identity (line 10 column 21): the trust domain \
             \"Example.org\" may hold only lowercase letters, digits, `.`, `-` and `_`"
        )
    );
    let text = doc("  action: ALLOW\n  rules:\n    - from:\n        - identity: web/frontend\n");
    assert_eq!(
        error(&text),
        format!(
            "{AT}: field spec.rules[0].from[0].identity (line 10 column 21): a SPIFFE ID must \
             start with `spiffe://`: \"web/frontend\""
        )
    );
    let text =
        doc("  action: ALLOW\n  rules:\n    - from:\n        - identity: spiffe://*.org/ns/web\n");
    assert!(
        error(&text).ends_with(
            "a pattern may use `*` only after the trust domain: \"spiffe://*.org/ns/web\""
        ),
        "{}",
        error(&text)
    );
    let text = doc("  action: ALLOW\n  rules:\n    - from:\n        - trustDomain: Partner.org\n");
    assert_eq!(
        error(&text),
        format!(
            "{AT}: field spec.rules[0].from[0].trustDomain (line 10 column 24): the trust \
             domain \"Partner.org\" may hold only lowercase letters, digits, `.`, `-` and `_`"
        )
    );
}

fn ports_error(ports: &str) -> String {
    error(&doc(&format!(
        "  action: ALLOW\n  rules:\n    - ports: {ports}\n"
    )))
}

#[test]
fn refuses_port_zero() {
    assert_eq!(
        ports_error("[8080, 0]"),
        format!(
            "{AT}: field spec.rules[0].ports[1] (line 9 column 21): port 0 is out of range: ports are 1-65535"
        )
    );
}

#[test]
fn refuses_port_70000() {
    assert_eq!(
        ports_error("[8080, 70000]"),
        format!(
            "{AT}: field spec.rules[0].ports[1] (line 9 column 21): port 70000 is out of range: ports are 1-65535"
        )
    );
    assert!(
        ports_error("[\"9000-70000\"]").ends_with("port 70000 is out of range: ports are 1-65535")
    );
    assert!(ports_error("[-1]").ends_with("port -1 is out of range: ports are 1-65535"));
}

#[test]
fn refuses_a_reversed_port_range() {
    assert_eq!(
        ports_error("[8080, \"90-80\"]"),
        format!(
            "{AT}: field spec.rules[0].ports[1] (line 9 column 21): port range 90-80 is \
             reversed: its first port must not exceed its last"
        )
    );
}

#[test]
fn refuses_other_bad_ports() {
    assert_eq!(
        ports_error("[http]"),
        format!(
            "{AT}: field spec.rules[0].ports[0] (line 9 column 15): \"http\" is neither a port \
             (1-65535) nor a port range such as \"9000-9100\""
        )
    );
    assert!(
        ports_error("[80.5]").ends_with(
            "invalid type: floating point `80.5`, expected a port (1-65535) or a port range such \
             as \"9000-9100\""
        ),
        "{}",
        ports_error("[80.5]")
    );
    assert_eq!(
        ports_error("[]"),
        format!(
            "{AT}: field spec.rules[0].ports (line 9 column 14): an empty port list would match \
             no port; leave `ports` out to match any port"
        )
    );
}

#[test]
fn a_default_action_stands_alone() {
    let policy = parse_documents(&doc("  defaultAction: deny\n"), "shop.yaml")
        .unwrap()
        .remove(0);
    assert_eq!(policy.default_action(), Some(crate::DefaultAction::Deny));
    assert_eq!(policy.action(), None);
    assert_eq!(
        Policy::from_json(&policy.to_json()).unwrap(),
        policy,
        "{}",
        policy.to_json()
    );
    assert!(
        policy
            .to_json()
            .contains(r#""spec":{"defaultAction":"deny"}"#)
    );
    for spec in [
        "  defaultAction: deny\n  action: ALLOW\n  rules: [{}]\n",
        "  defaultAction: allow\n  selector: {serviceAccount: api}\n",
    ] {
        let message = error(&doc(spec));
        assert!(
            message.starts_with(&format!("{AT}: field spec"))
                && message.contains("`defaultAction` stands alone"),
            "{message}"
        );
    }
    let message = error(&doc("  defaultAction: DENY\n"));
    assert!(
        message.contains("unknown variant `DENY`, expected `allow` or `deny`"),
        "{message}"
    );
    assert_eq!(
        error(&doc("  rules: [{}]\n")),
        format!("{AT}: field spec.action: this required field is missing")
    );
}

#[test]
fn refuses_missing_or_empty_rules() {
    assert_eq!(
        error(&doc("  action: ALLOW\n")),
        format!("{AT}: field spec.rules: this required field is missing")
    );
    assert_eq!(
        error(&doc("  action: ALLOW\n  rules: []\n")),
        format!(
            "{AT}: field spec.rules (line 8 column 10): a policy needs at least one rule (a rule \
             with neither `from` nor `ports`, `rules: [{{}}]`, matches all traffic)"
        )
    );
}

#[test]
fn refuses_an_empty_from_entry() {
    let text =
        doc("  action: ALLOW\n  rules:\n    - from:\n        - namespace: web\n        - {}\n");
    assert_eq!(
        error(&text),
        format!(
            "{AT}: field spec.rules[0].from[1] (line 11 column 11): an empty `from` entry is not \
             allowed: give `identity`, `namespace` and/or `trustDomain` (leave `from` out to \
             match any source)"
        )
    );
}

#[test]
fn refuses_a_bad_action() {
    assert_eq!(
        error(&doc("  action: allow\n  rules: [{}]\n")),
        format!(
            "{AT}: field spec.action (line 7 column 11): unknown variant `allow`, expected one \
             of `ALLOW`, `DENY`, `AUDIT`"
        )
    );
}

#[test]
fn refuses_a_duplicate_namespace_and_name() {
    let one = doc("  action: ALLOW\n  rules: [{}]\n");
    let other = one.replace("name: web", "name: api");
    let text = format!("{one}---\n{other}---\n{one}");
    assert_eq!(
        error(&text),
        "shop.yaml: document 3 (policy shop/web): field metadata: policy shop/web is already \
         defined by document 1"
    );
    let mesh_wide = one.replace("  namespace: shop\n", "");
    let text = format!("{one}---\n{mesh_wide}");
    assert_eq!(
        parse_documents(&text, "x.yaml").unwrap().len(),
        2,
        "web and shop/web are different policies"
    );
}

#[test]
fn refuses_bad_label_keys_and_values() {
    let labels = |pair: &str| {
        error(&doc(&format!(
            "  action: ALLOW\n  selector:\n    matchLabels:\n      {pair}\n  rules: [{{}}]\n"
        )))
    };
    assert_eq!(
        labels("-app: api"),
        format!(
            "{AT}: field spec.selector.matchLabels.-app (line 10 column 7): \"-app\" is not a \
             label key: use `name` or `prefix/name`, where name is 1-63 letters, digits, `-`, \
             `_` or `.` starting and ending with a letter or digit, and prefix is a DNS subdomain"
        )
    );
    assert_eq!(
        labels("{app: api, tier: backend, app: web}"),
        format!(
            "{AT}: field spec.selector.matchLabels (line 10 column 7): key \"app\" appears \
             twice"
        )
    );
    assert_eq!(
        labels("app: -api"),
        format!(
            "{AT}: field spec.selector.matchLabels.app (line 10 column 12): \"-api\" is not a \
             label value: use at most 63 letters, digits, `-`, `_` or `.`, starting and ending \
             with a letter or digit"
        )
    );
}

#[test]
fn refuses_bad_names() {
    let text = doc("  action: ALLOW\n  selector: {serviceAccount: Api}\n  rules: [{}]\n");
    assert!(
        error(&text).starts_with(&format!(
            "{AT}: field spec.selector.serviceAccount (line 8 column 30): \"Api\" is not a DNS \
             subdomain"
        )),
        "{}",
        error(&text)
    );
    let text = doc("  action: ALLOW\n  rules: [{}]\n").replace("name: web", "name: Allow_Web");
    assert_eq!(
        error(&text),
        "shop.yaml: document 1 (policy shop/Allow_Web): field metadata.name (line 4 column 9): \
         \"Allow_Web\" is not a DNS label: use 1-63 lowercase letters, digits and `-`, starting \
         and ending with a letter or digit"
    );
    let text = doc("  action: ALLOW\n  rules: [{}]\n").replace("  name: web\n", "");
    assert_eq!(
        error(&text),
        "shop.yaml: document 1: field metadata.name: this required field is missing"
    );
}

#[test]
fn refuses_an_empty_file() {
    for text in ["", "\n", "# just a comment\n", "---\n---\n"] {
        assert_eq!(
            error(text),
            "shop.yaml: no AuthorizationPolicy documents: the text is empty or holds only comments",
            "{text:?}"
        );
    }
}

#[test]
fn refuses_other_kinds_of_documents() {
    let text = doc("  action: ALLOW\n  rules: [{}]\n");
    assert_eq!(
        error(&text.replace("ferrule.dev/v1alpha1", "ferrule.dev/v1")),
        format!(
            "{AT}: field apiVersion: expected \"ferrule.dev/v1alpha1\", found \"ferrule.dev/v1\": \
             policy files hold only ferrule.dev/v1alpha1 AuthorizationPolicy documents"
        )
    );
    // A Deployment fails on its spec first, but its kind is what the user needs to hear.
    let deployment = "spec: {replicas: 3}\napiVersion: ferrule.dev/v1alpha1\nkind: Deployment\n\
                      metadata: {name: web, namespace: shop}\n";
    assert_eq!(
        error(deployment),
        format!(
            "{AT}: field kind: expected \"AuthorizationPolicy\", found \"Deployment\": policy \
             files hold only ferrule.dev/v1alpha1 AuthorizationPolicy documents"
        )
    );
    assert_eq!(
        error("just text\n"),
        "shop.yaml: document 1: line 1 column 1: invalid type: string \"just text\", expected a \
         mapping"
    );
}

#[test]
fn from_json_validates_again() {
    let policy = &parse_documents(&doc("  action: DENY\n  rules: [{}]\n"), "x.yaml").unwrap()[0];
    let json = policy.to_json();
    let bad_port = json.replace("\"rules\":[{}]", "\"rules\":[{\"ports\":[0]}]");
    // serde_json points at the last character of the value, the `0` (columns count from 1).
    let column = bad_port.find("[0]").unwrap() + 2;
    assert_eq!(
        Policy::from_json(&bad_port).unwrap_err().to_string(),
        format!(
            "policy JSON (policy shop/web): field spec.rules[0].ports[0] (line 1 column \
             {column}): port 0 is out of range: ports are 1-65535"
        )
    );
    let unknown = json.replace("\"action\"", "\"verb\"");
    let column = unknown.find("\"verb\"").unwrap() + "\"verb\"".len();
    assert_eq!(
        Policy::from_json(&unknown).unwrap_err().to_string(),
        format!(
            "policy JSON (policy shop/web): field spec.verb (line 1 column {column}): unknown \
             field `verb`, expected one of `action`, `selector`, `rules`, `defaultAction`"
        )
    );
    assert_eq!(
        Policy::from_json(&json[..40]).unwrap_err().to_string(),
        "policy JSON: JSON syntax error at line 1 column 40: EOF while parsing a string"
    );
    assert_eq!(
        Policy::from_json(&format!("{json} {json}"))
            .unwrap_err()
            .to_string(),
        format!(
            "policy JSON: JSON syntax error at line 1 column {}: trailing characters",
            json.len() + 2
        )
    );
}
