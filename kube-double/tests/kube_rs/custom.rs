//! Custom resources: the ferrule.dev AuthorizationPolicy through `DynamicObject` (status
//! subresource, generation, status-only writes) and CustomResourceDefinitions that register
//! new resources when created and take them away when deleted.
//!
//! Double-only: a real cluster has the AuthorizationPolicy CRD only once ferrule is installed,
//! and registering a cluster-wide CRD is not a test's to do there.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::json;

use super::{admin, api_error, double, namespace};

fn policies() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ferrule.dev", "v1alpha1", "AuthorizationPolicy"),
        "authorizationpolicies",
    )
}

#[tokio::test]
async fn authorization_policies_keep_spec_and_status_apart() {
    let double = double();
    let client = admin(&double).await;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace("shop", &[]))
        .await
        .unwrap();
    let resource = policies();
    let api: Api<DynamicObject> = Api::namespaced_with(client, "shop", &resource);
    let policy = DynamicObject::new("allow-web", &resource)
        .within("shop")
        .data(json!({
            "spec": {"action": "ALLOW", "rules": [{"from": [{"namespace": "shop"}]}]},
            "status": {"observedGeneration": 99},
        }));
    let created = api.create(&PostParams::default(), &policy).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(
        created.data.get("status"),
        None,
        "status is not taken on create"
    );

    let accepted = json!({"status": {"observedGeneration": 1, "conditions": [
        {"type": "Accepted", "status": "True", "reason": "Valid", "message": ""}]}});
    let with_status = api
        .patch_status(
            "allow-web",
            &PatchParams::default(),
            &Patch::Merge(&accepted),
        )
        .await
        .unwrap();
    assert_eq!(
        with_status.data["status"]["conditions"][0]["reason"],
        "Valid"
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "a status write does not bump the generation"
    );

    let spec_change = json!({"spec": {"action": "DENY"}, "status": {"observedGeneration": 7}});
    let changed = api
        .patch(
            "allow-web",
            &PatchParams::default(),
            &Patch::Merge(&spec_change),
        )
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(changed.data["spec"]["action"], "DENY");
    assert_eq!(
        changed.data["status"]["observedGeneration"], 1,
        "status written through the main resource is ignored"
    );

    // A controller writing status with server-side apply, as kube-rs controllers do.
    let applied = json!({"apiVersion": "ferrule.dev/v1alpha1", "kind": "AuthorizationPolicy",
        "status": {"observedGeneration": 2, "conditions": [{"type": "Accepted", "status": "False", "reason": "Invalid", "message": "rules[0]: bad"}]}});
    let status = api
        .patch_status(
            "allow-web",
            &PatchParams::apply("ferrule-control-plane").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["conditions"][0]["status"], "False");
    assert_eq!(status.data["spec"]["action"], "DENY");
    assert_eq!(
        api.get_status("allow-web").await.unwrap().data["status"]["observedGeneration"],
        2
    );

    let gone = api
        .delete("allow-web", &DeleteParams::default())
        .await
        .unwrap();
    assert!(gone.is_left());
    assert_eq!(
        api_error(api.get("allow-web").await),
        (404, "NotFound".to_owned())
    );
}

#[tokio::test]
async fn crds_register_resources_and_deleting_them_removes_the_resources() {
    let double = double();
    let client = admin(&double).await;
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let widget = DynamicObject::new("w", &resource).data(json!({"spec": {"size": 3}}));
    assert_eq!(
        api_error(widgets.create(&PostParams::default(), &widget).await).0,
        404,
        "no CRD yet"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let stored = crds.create(&PostParams::default(), &crd).await.unwrap();
    assert_eq!(
        stored.spec.names.kind, "Widget",
        "the CRD is stored as given"
    );
    let created = widgets
        .create(&PostParams::default(), &widget)
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["size"], 3);
    assert_eq!(created.metadata.namespace, None, "cluster-scoped");

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_error(widgets.get("w").await).0, 404);
}
