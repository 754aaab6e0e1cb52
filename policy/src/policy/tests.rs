use super::*;
use crate::testing::{Dest, policy};

#[test]
fn selects_by_namespace_then_selector() {
    let namespaced = policy(Some("shop"), "p", "ALLOW", "rules: [{}]");
    let mesh_wide = policy(None, "p", "ALLOW", "rules: [{}]");
    let by_sa = policy(
        Some("shop"),
        "p",
        "ALLOW",
        "selector: {serviceAccount: api}\nrules: [{}]",
    );
    let shop_api = Dest::new("shop", "api", &[]);
    let shop_cart = Dest::new("shop", "cart", &[]);
    let bank_api = Dest::new("bank", "api", &[]);
    assert!(namespaced.selects(&shop_api.workload()));
    assert!(!namespaced.selects(&bank_api.workload()));
    assert!(mesh_wide.selects(&bank_api.workload()));
    assert!(by_sa.selects(&shop_api.workload()));
    assert!(!by_sa.selects(&shop_cart.workload()));
    assert!(!by_sa.selects(&bank_api.workload()));
}

#[test]
fn exposes_what_it_holds() {
    let p = policy(
        Some("shop"),
        "allow-web",
        "AUDIT",
        "selector: {matchLabels: {app: api}}\nrules: [{from: [{namespace: web}], ports: [80]}]",
    );
    assert_eq!(p.key().to_string(), "shop/allow-web");
    assert_eq!((p.namespace(), p.name()), (Some("shop"), "allow-web"));
    assert_eq!(p.action(), Some(Action::Audit));
    assert_eq!(p.action().unwrap().to_string(), "AUDIT");
    assert_eq!(p.default_action(), None);
    assert_eq!(p.selector().service_account(), None);
    assert!(!p.selector().is_empty());
    let rule = &p.rules()[0];
    assert_eq!(rule.from()[0].namespace(), Some("web"));
    assert_eq!(rule.ports().map(<[PortRange]>::len), Some(1));
}

#[test]
fn plain_serde_validates_too() {
    // The control plane may embed `Policy` in its own stored types; those checks must hold.
    let json = policy(None, "p", "ALLOW", "rules: [{ports: [80]}]").to_json();
    assert!(serde_json::from_str::<Policy>(&json).is_ok());
    let bad = json.replace("[80]", "[0]");
    let err = serde_json::from_str::<Policy>(&bad)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("port 0 is out of range"), "{err}");
    let bad = json.replace("\"p\"", "\"P\"");
    let err = serde_json::from_str::<Policy>(&bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"P\" is not a DNS label"), "{err}");
}
