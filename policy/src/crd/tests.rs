use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::{CustomResourceExt, Resource};
use serde_json::{Value, json};

use super::*;
use crate::parse_documents;

const EXAMPLE: &str = include_str!("../../examples/shop.yaml");
const ROOT: &str = "ferrule-system";

/// The object kubectl would create from a policy file's document.
fn object_from_yaml(document: &str) -> AuthorizationPolicy {
    let value: Value = serde_norway::from_str(document).expect("the test document is YAML");
    serde_json::from_value(value).unwrap_or_else(|e| panic!("object from {document}: {e}"))
}

fn document(namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: web\n  \
         namespace: {namespace}\nspec:\n{spec}"
    )
}

fn time(second: i64) -> Time {
    Time(Timestamp::from_second(second).unwrap())
}

#[test]
fn example_policies_round_trip_through_objects() {
    let mut policies = parse_documents(EXAMPLE, "shop.yaml").unwrap();
    policies
        .extend(parse_documents(&document("shop", "  action: DENY\n  rules: [{}]"), "t").unwrap());
    let mesh_wide = "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  \
                     name: deny-legacy\nspec:\n  action: DENY\n  rules:\n    - from: [{namespace: \
                     legacy}]\n      ports: [1, \"2-65535\"]\n";
    policies.extend(parse_documents(mesh_wide, "mesh.yaml").unwrap());
    for policy in &policies {
        let object = AuthorizationPolicy::from_policy(policy, ROOT).unwrap();
        let expected_namespace = policy.namespace().unwrap_or(ROOT);
        assert_eq!(
            object.metadata.namespace.as_deref(),
            Some(expected_namespace)
        );
        assert_eq!(object.metadata.name.as_deref(), Some(policy.name()));
        // The spec is the document's spec, field for field.
        let document: Value = serde_json::from_str(&policy.to_json()).unwrap();
        assert_eq!(
            serde_json::to_value(&object.spec).unwrap(),
            document["spec"]
        );
        // Through the API server's JSON and back.
        let json = serde_json::to_string(&object).unwrap();
        let read: AuthorizationPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(read, object, "{json}");
        assert_eq!(&read.to_policy(ROOT).unwrap(), policy, "{json}");
    }
}

#[test]
fn an_object_applied_with_kubectl_reads_as_the_file_does() {
    for document in EXAMPLE.split("\n---\n").skip(1) {
        let object = object_from_yaml(document);
        let from_file = parse_documents(document, "shop.yaml").unwrap().remove(0);
        assert_eq!(object.to_policy(ROOT).unwrap(), from_file);
    }
}

#[test]
fn objects_in_the_root_namespace_are_mesh_wide() {
    let object = object_from_yaml(&document(ROOT, "  action: ALLOW\n  rules: [{}]"));
    let policy = object.to_policy(ROOT).unwrap();
    assert_eq!(policy.namespace(), None);
    assert_eq!(policy.key().to_string(), "web");
    let policy = object.to_policy("other-root").unwrap();
    assert_eq!(policy.namespace(), Some(ROOT));
}

#[test]
fn a_policy_in_the_root_namespace_is_refused_rather_than_made_mesh_wide() {
    let policy = parse_documents(&document(ROOT, "  action: ALLOW\n  rules: [{}]"), "t")
        .unwrap()
        .remove(0);
    let error = AuthorizationPolicy::from_policy(&policy, ROOT).unwrap_err();
    assert!(
        error.to_string().starts_with(
            "AuthorizationPolicy ferrule-system/web: field metadata.namespace: policies in \
             ferrule-system apply mesh-wide"
        ),
        "{error}"
    );
}

/// The `Invalid` error's field and reason, which the CLI and the object's status share.
fn field_and_reason(error: &PolicyError) -> (Option<String>, String) {
    match error {
        PolicyError::Invalid { field, reason, .. } => (field.clone(), reason.clone()),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn invalid_objects_give_the_errors_of_the_cli() {
    let cases = [
        (
            "  action: ALLOW\n  rules:\n    - ports: [80, 70000]\n",
            "field spec.rules[0].ports[1]: port 70000 is out of range: ports are 1-65535",
        ),
        (
            "  action: ALLOW\n  rules:\n    - ports: [\"90-80\"]\n",
            "field spec.rules[0].ports[0]: port range 90-80 is reversed: its first port must \
             not exceed its last",
        ),
        (
            "  action: ALLOW\n  rules:\n    - from: [{identity: 'spiffe://example.org/ns//x'}]\n",
            "field spec.rules[0].from[0].identity: ",
        ),
        (
            "  action: ALLOW\n  rules:\n    - from: [{namespace: web, service: api}]\n",
            "field spec.rules[0].from[0].service: unknown field `service`, expected one of `identity`, \
             `namespace`, `trustDomain`",
        ),
        (
            "  action: ALLOW\n  rules: [{}]\n  defaultAction: deny\n",
            "field spec: `defaultAction` stands alone",
        ),
        (
            "  action: ALLOW\n  rules:\n    - from: [{}]\n",
            "field spec.rules[0].from[0]: an empty `from` entry is not allowed",
        ),
        (
            "  action: ALLOW\n  selector:\n    matchLabels: {'-bad': x}\n  rules: [{}]\n",
            "field spec.selector.matchLabels.-bad: \"-bad\" is not a label key",
        ),
        (
            "  action: ALLOW\n  rules: []\n",
            "field spec.rules: a policy needs at least one rule",
        ),
    ];
    for (spec, expected) in cases {
        let text = document("shop", spec);
        let cli = parse_documents(&text, "shop.yaml").unwrap_err();
        let object = object_from_yaml(&text);
        let status = object.to_policy(ROOT).unwrap_err();
        assert_eq!(
            field_and_reason(&status),
            field_and_reason(&cli),
            "object error {status}\nCLI error    {cli}"
        );
        let message = status.to_string();
        assert!(
            message.starts_with(&format!("AuthorizationPolicy shop/web: {expected}")),
            "for spec\n{spec}\nexpected \"AuthorizationPolicy shop/web: {expected}…\", got\n\
             {message}"
        );
    }
}

#[test]
fn names_kubernetes_allows_but_policies_do_not_are_refused() {
    let text = document("shop", "  action: ALLOW\n  rules: [{}]").replace("name: web", "name: a.b");
    let error = object_from_yaml(&text).to_policy(ROOT).unwrap_err();
    assert_eq!(
        error.to_string(),
        "AuthorizationPolicy shop/a.b: field metadata.name: \"a.b\" is not a DNS label: use 1-63 \
         lowercase letters, digits and `-`, starting and ending with a letter or digit"
    );
    let mut object = object_from_yaml(&document("shop", "  action: ALLOW\n  rules: [{}]"));
    object.metadata.namespace = None;
    let error = object.to_policy(ROOT).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("AuthorizationPolicy web: field metadata.namespace: "),
        "{error}"
    );
}

#[test]
fn status_reports_acceptance_and_keeps_transition_times() {
    let valid = object_from_yaml(&document("shop", "  action: ALLOW\n  rules: [{}]"));
    let invalid = object_from_yaml(&document(
        "shop",
        "  action: ALLOW\n  rules: [{ports: [0]}]",
    ));
    let ok = valid.to_policy(ROOT);
    let bad = invalid.to_policy(ROOT);

    let first = AuthorizationPolicyStatus::accepted(None, Some(1), &ok, time(100));
    let condition = first.accepted_condition().unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", REASON_VALID)
    );
    assert_eq!(first.observed_generation, Some(1));

    let same = AuthorizationPolicyStatus::accepted(Some(&first), Some(1), &ok, time(200));
    assert_eq!(
        same, first,
        "an unchanged outcome changes nothing, not even the time"
    );

    let refused = AuthorizationPolicyStatus::accepted(Some(&first), Some(2), &bad, time(300));
    let condition = refused.accepted_condition().unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", REASON_INVALID)
    );
    assert_eq!(condition.message, bad.as_ref().unwrap_err().to_string());
    assert_eq!(condition.last_transition_time, time(300));
    assert_eq!(condition.observed_generation, Some(2));
    assert_eq!(refused.conditions.len(), 1);

    let json = serde_json::to_value(&refused).unwrap();
    assert_eq!(json["conditions"][0]["type"], "Accepted");
    assert_eq!(
        json["conditions"][0]["lastTransitionTime"],
        "1970-01-01T00:05:00Z"
    );
    assert_eq!(json["observedGeneration"], 2);
}

/// Every node of a structural schema states its type, except int-or-string and
/// preserve-unknown-fields nodes; no `$ref`, and no `type` inside `anyOf`/`oneOf`/`allOf`.
fn assert_structural(schema: &Value, path: &str) {
    let object = schema
        .as_object()
        .unwrap_or_else(|| panic!("{path}: not an object"));
    assert!(!object.contains_key("$ref"), "{path}: $ref");
    let exempt = object.get("x-kubernetes-int-or-string") == Some(&json!(true))
        || object.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if exempt {
        assert!(
            !object.contains_key("type"),
            "{path}: int-or-string with a type"
        );
    } else {
        assert!(
            object.get("type").is_some_and(Value::is_string),
            "{path}: no single type"
        );
    }
    for keyword in ["anyOf", "oneOf", "allOf"] {
        for branch in object
            .get(keyword)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            assert!(
                branch.get("type").is_none(),
                "{path}.{keyword}: type in a branch"
            );
        }
    }
    for (name, property) in object
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        assert_structural(property, &format!("{path}.{name}"));
    }
    for keyword in ["items", "additionalProperties"] {
        if let Some(sub) = object.get(keyword).filter(|s| s.is_object()) {
            assert_structural(sub, &format!("{path}.{keyword}"));
        }
    }
}

#[test]
fn the_crd_names_the_resource_and_validates_what_openapi_can() {
    let crd = AuthorizationPolicy::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("authorizationpolicies.ferrule.dev")
    );
    assert_eq!(crd.spec.group, "ferrule.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "AuthorizationPolicy");
    assert_eq!(crd.spec.names.plural, "authorizationpolicies");
    assert_eq!(AuthorizationPolicy::api_version(&()), API_VERSION);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Action", "Default", "Accepted", "Age"]);

    let schema =
        serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
    assert_structural(&schema, "");
    let spec = &schema["properties"]["spec"];
    assert_eq!(spec["required"], Value::Null);
    assert_eq!(
        spec["oneOf"],
        json!([{"required": ["action", "rules"]}, {"required": ["defaultAction"]}]),
        "rules, or a default alone"
    );
    assert_eq!(
        spec["properties"]["defaultAction"]["enum"],
        json!(["allow", "deny"])
    );
    assert_eq!(
        spec["properties"]["action"]["enum"],
        json!(["ALLOW", "DENY", "AUDIT"])
    );
    let rules = &spec["properties"]["rules"];
    assert_eq!(rules["minItems"], 1);
    let rule = &rules["items"]["properties"];
    let port = &rule["ports"]["items"];
    assert_eq!(rule["ports"]["minItems"], 1);
    assert_eq!(port["x-kubernetes-int-or-string"], true);
    let bound = |keyword: &str| port[keyword].as_f64();
    assert_eq!(
        (bound("minimum"), bound("maximum")),
        (Some(1.0), Some(65535.0))
    );
    assert_eq!(port["pattern"], "^[0-9]{1,5}(-[0-9]{1,5})?$");
    let source = &rule["from"]["items"];
    assert_eq!(source["minProperties"], 1);
    let keys: Vec<&String> = source["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["identity", "namespace", "trustDomain"]);
    assert_eq!(source["properties"]["namespace"]["maxLength"], 63);
    assert!(source["properties"]["identity"]["pattern"].is_string());
    let selector = &spec["properties"]["selector"]["properties"];
    assert_eq!(selector["serviceAccount"]["maxLength"], 253);
    assert_eq!(
        selector["matchLabels"]["additionalProperties"]["maxLength"],
        63
    );
    assert!(
        !schema.to_string().contains("unknown"),
        "the catch-all for unknown fields is not part of the schema: {schema}"
    );
    let conditions = &schema["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["items"]["required"],
        json!(["lastTransitionTime", "message", "reason", "status", "type"])
    );
}
