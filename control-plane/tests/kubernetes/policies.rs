//! AuthorizationPolicy objects are the policies in Kubernetes mode.

use ferrule_policy::crd::AuthorizationPolicy;
use ferrule_proto::v1;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use tonic::Code;

use crate::harness::{Cluster, SYSTEM, admin_kube_client, eventually, namespace};

fn object(namespace: &str, name: &str, spec: serde_json::Value) -> AuthorizationPolicy {
    serde_json::from_value(json!({
        "apiVersion": "ferrule.dev/v1alpha1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .expect("an AuthorizationPolicy object")
}

/// The keys `ferrule policy get` lists.
async fn policies(cluster: &Cluster) -> Vec<String> {
    let response = cluster
        .admin()
        .list_policies(v1::ListPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    response
        .policies
        .iter()
        .map(|doc| {
            ferrule_policy::Policy::from_json(&doc.json)
                .unwrap()
                .key()
                .to_string()
        })
        .collect()
}

/// The policy `key` as the configuration holds it, in canonical JSON.
async fn policy_json(cluster: &Cluster, key: &str) -> Option<String> {
    let response = cluster
        .admin()
        .list_policies(v1::ListPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    response
        .policies
        .into_iter()
        .find(|doc| {
            ferrule_policy::Policy::from_json(&doc.json)
                .unwrap()
                .key()
                .to_string()
                == key
        })
        .map(|doc| doc.json)
}

/// The object's `Accepted` condition (status, message) once it describes its generation `at`.
async fn accepted(cluster: &Cluster, namespace: &str, name: &str, at: i64) -> (String, String) {
    eventually(
        &format!("an Accepted condition for generation {at} of {namespace}/{name}"),
        async || {
            let object: AuthorizationPolicy = cluster.double.get(namespace, name)?;
            let status = object.status?;
            let condition = status.accepted_condition()?.clone();
            (status.observed_generation == Some(at) && condition.observed_generation == Some(at))
                .then_some((condition.status, condition.message))
        },
    )
    .await
}

const REVERSED: &str = "port range 90-80 is reversed: its first port must not exceed its last";

#[tokio::test(flavor = "multi_thread")]
async fn valid_objects_become_policies_and_invalid_ones_are_told_why() {
    let cluster = Cluster::start().await;
    cluster.double.put(&namespace("shop", None)).unwrap();
    let kubectl = admin_kube_client(&cluster.double).await;
    let shop = Api::<AuthorizationPolicy>::namespaced(kubectl.clone(), "shop");
    let system = Api::<AuthorizationPolicy>::namespaced(kubectl, SYSTEM);
    let create = PostParams::default();

    let bad = object(
        "shop",
        "bad",
        json!({"action": "ALLOW", "rules": [{"ports": ["90-80"]}]}),
    );
    shop.create(&create, &bad).await.unwrap();
    let (status, message) = accepted(&cluster, "shop", "bad", 1).await;
    assert_eq!(status, "False");
    assert_eq!(
        message,
        format!("AuthorizationPolicy shop/bad: field spec.rules[0].ports[0]: {REVERSED}")
    );
    // The same document as a file: the CLI says the same about the same field.
    let cli = ferrule_policy::parse_documents(
        "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: shop}\nspec:\n  action: ALLOW\n  rules:\n    - ports: [\"90-80\"]\n",
        "shop.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        cli.contains("spec.rules[0].ports[0]") && cli.ends_with(REVERSED),
        "{cli}"
    );

    let web = json!({"action": "ALLOW", "selector": {"serviceAccount": "web"}, "rules": [{"from": [{"namespace": "shop"}], "ports": [8080]}]});
    shop.create(&create, &object("shop", "allow-web", web))
        .await
        .unwrap();
    let audit = json!({"action": "AUDIT", "rules": [{}]});
    system
        .create(&create, &object(SYSTEM, "audit-all", audit))
        .await
        .unwrap();
    assert_eq!(accepted(&cluster, "shop", "allow-web", 1).await.0, "True");
    assert_eq!(accepted(&cluster, SYSTEM, "audit-all", 1).await.0, "True");
    eventually("both valid policies in the configuration", async || {
        let keys = policies(&cluster).await;
        (keys == ["audit-all", "shop/allow-web"]).then_some(())
    })
    .await;
    let good = policy_json(&cluster, "shop/allow-web").await.unwrap();
    assert!(good.contains("8080"), "{good}");

    // An edit that breaks the object: reported, and the configuration keeps the last good one.
    let mut broken = shop.get("allow-web").await.unwrap();
    broken.spec.rules.as_mut().unwrap()[0].ports = Some(vec![
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("90-80".into()),
    ]);
    let broken = shop.replace("allow-web", &create, &broken).await.unwrap();
    let generation = broken.metadata.generation.unwrap();
    assert_eq!(generation, 2);
    let (status, message) = accepted(&cluster, "shop", "allow-web", generation).await;
    assert_eq!(status, "False");
    assert!(message.ends_with(REVERSED), "{message}");
    assert_eq!(policy_json(&cluster, "shop/allow-web").await, Some(good));

    // Deleting the mesh-wide object removes its policy.
    system
        .delete("audit-all", &DeleteParams::default())
        .await
        .unwrap();
    eventually("audit-all to leave the configuration", async || {
        (policies(&cluster).await == ["shop/allow-web"]).then_some(())
    })
    .await;
}

fn documents(yaml: &str) -> Vec<v1::PolicyDocument> {
    ferrule_policy::parse_documents(yaml, "policies.yaml")
        .expect("valid policies")
        .iter()
        .map(|p| v1::PolicyDocument { json: p.to_json() })
        .collect()
}

const FILE: &str = "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: base}\nspec: {action: AUDIT, rules: [{}]}\n---\napiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: api, namespace: shop}\nspec: {action: ALLOW, rules: [{ports: [9000]}]}\n";

#[tokio::test(flavor = "multi_thread")]
async fn admin_policy_calls_write_objects_in_kubernetes_mode() {
    let cluster = Cluster::start().await;
    cluster.double.put(&namespace("shop", None)).unwrap();
    let applied = cluster
        .admin()
        .apply_policies(v1::ApplyPoliciesRequest {
            policies: documents(FILE),
        })
        .await
        .expect("apply")
        .into_inner();
    assert_eq!(applied.changed, ["base", "shop/api"]);
    // The objects exist, and the answer came once the watch had brought them in.
    let base: AuthorizationPolicy = cluster
        .double
        .get(SYSTEM, "base")
        .expect("mesh-wide object");
    assert_eq!(base.spec.rules.as_ref().map(Vec::len), Some(1));
    assert!(
        cluster
            .double
            .get::<AuthorizationPolicy>("shop", "api")
            .is_some()
    );
    assert_eq!(policies(&cluster).await, ["base", "shop/api"]);
    assert!(applied.version > 0);
    assert_eq!(accepted(&cluster, "shop", "api", 1).await.0, "True");

    // Applied again unchanged: nothing changed.
    let again = cluster
        .admin()
        .apply_policies(v1::ApplyPoliciesRequest {
            policies: documents(FILE),
        })
        .await
        .expect("apply again")
        .into_inner();
    assert!(again.changed.is_empty(), "{:?}", again.changed);

    // A file is validated whole: a policy that cannot be an object stops the others too.
    let mixed = "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: new, namespace: shop}\nspec: {action: ALLOW, rules: [{}]}\n---\napiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: odd, namespace: ferrule-system}\nspec: {action: ALLOW, rules: [{}]}\n";
    let status = cluster
        .admin()
        .apply_policies(v1::ApplyPoliciesRequest {
            policies: documents(mixed),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("apply mesh-wide in Kubernetes mode"),
        "{status:?}"
    );
    assert!(
        cluster
            .double
            .get::<AuthorizationPolicy>("shop", "new")
            .is_none()
    );

    let deleted = cluster
        .admin()
        .delete_policies(v1::DeletePoliciesRequest {
            keys: vec!["base".into()],
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.deleted, ["base"]);
    assert!(
        cluster
            .double
            .get::<AuthorizationPolicy>(SYSTEM, "base")
            .is_none()
    );
    assert_eq!(policies(&cluster).await, ["shop/api"]);
    let status = cluster
        .admin()
        .delete_policies(v1::DeletePoliciesRequest {
            keys: vec!["shop/nope".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}
