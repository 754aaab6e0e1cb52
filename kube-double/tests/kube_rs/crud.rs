//! Core resources through `Api<K>`: metadata the server manages, conflicts, patches of every
//! content type, the status subresource, deletes, scope and pagination.
//!
//! Against a real cluster too (`KUBECONFIG`): the pod round trip, server-side apply and
//! pagination. Double-only: namespace scoping (it lists every namespace and uses fixed names)
//! and nodes (it creates a Node and reads it back directly).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec, Pod, PodStatus, Taint};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::ObjectMeta;
use serde_json::json;

use super::{NO_SUCH_NODE, Target, admin, api_error, double, namespace, now, pod};

#[tokio::test]
async fn pods_round_trip_with_server_managed_metadata_and_conflicts() {
    let target = Target::new().await;
    let ns = target.unique_namespace().await;
    let pods: Api<Pod> = Api::namespaced(target.admin_client(), &ns);

    let created = pods
        .create(
            &PostParams::default(),
            &pod(&ns, "web-0", Some(NO_SUCH_NODE)),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(
        meta.uid.as_ref().map(String::len),
        Some(36),
        "uid: {meta:?}"
    );
    assert!(
        meta.creation_timestamp.is_some(),
        "creationTimestamp: {meta:?}"
    );
    if target.is_double() {
        // Real pods carry a generation only since Kubernetes 1.33 (PodObservedGenerationTracking).
        assert_eq!(meta.generation, Some(1));
    }
    assert_eq!(
        created.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    assert_eq!(
        api_error(
            pods.create(&PostParams::default(), &pod(&ns, "web-0", None))
                .await
        ),
        (409, "AlreadyExists".to_owned())
    );

    let fetched = pods.get("web-0").await.unwrap();
    assert_eq!(fetched.metadata.uid, created.metadata.uid);
    assert_eq!(
        fetched.spec.as_ref().unwrap().node_name.as_deref(),
        Some(NO_SUCH_NODE)
    );

    // Replace with the current resourceVersion works and bumps it; the old one is stale.
    let mut changed = fetched.clone();
    changed.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
    let replaced = pods
        .replace("web-0", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion {rv2} after {rv1}");
    assert_eq!(
        replaced.metadata.generation, created.metadata.generation,
        "labels are not spec"
    );
    let (code, reason) = api_error(
        pods.replace("web-0", &PostParams::default(), &changed)
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    // Merge, strategic and JSON patches.
    let pp = PatchParams::default();
    let merged = pods
        .patch(
            "web-0",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("tier")
            .map(String::as_str),
        Some("front")
    );
    let strategic = pods
        .patch(
            "web-0",
            &pp,
            &Patch::Strategic(json!({"metadata": {"annotations": {"a": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        strategic
            .metadata
            .annotations
            .unwrap()
            .get("a")
            .map(String::as_str),
        Some("1")
    );
    // activeDeadlineSeconds is one of the few pod spec fields a real server lets change.
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/app", "value": "web"},
        {"op": "remove", "path": "/metadata/labels/tier"},
        {"op": "add", "path": "/spec/activeDeadlineSeconds", "value": 3600},
    ]))
    .unwrap();
    let patched = pods
        .patch("web-0", &pp, &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(
        patched
            .metadata
            .labels
            .unwrap()
            .into_keys()
            .collect::<Vec<_>>(),
        ["app"]
    );
    assert_eq!(patched.spec.unwrap().active_deadline_seconds, Some(3600));
    if target.is_double() {
        assert_eq!(
            patched.metadata.generation,
            Some(2),
            "a spec change bumps the generation"
        );
    }
    let failing: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/metadata/labels/app", "value": "db"}]),
    )
    .unwrap();
    assert_eq!(
        api_error(pods.patch("web-0", &pp, &Patch::Json::<()>(failing)).await).0,
        422
    );

    // Status goes through the subresource only.
    let with_status = pods
        .patch_status(
            "web-0",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.1.0.5"}})),
        )
        .await
        .unwrap();
    let status = with_status.status.clone().unwrap();
    assert_eq!(
        (status.phase.as_deref(), status.pod_ip.as_deref()),
        (Some("Running"), Some("10.1.0.5"))
    );
    assert_eq!(
        with_status.metadata.generation, patched.metadata.generation,
        "status is not spec"
    );
    let mut sneaky = with_status.clone();
    sneaky.status = Some(PodStatus {
        phase: Some("Failed".to_owned()),
        ..PodStatus::default()
    });
    let kept = pods
        .replace("web-0", &PostParams::default(), &sneaky)
        .await
        .unwrap();
    assert_eq!(
        kept.status.unwrap().phase.as_deref(),
        Some("Running"),
        "main-resource writes keep .status"
    );
    let mut via_status = pods.get_status("web-0").await.unwrap();
    via_status.status.as_mut().unwrap().phase = Some("Succeeded".to_owned());
    via_status.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
    let replaced = pods
        .replace_status("web-0", &PostParams::default(), &via_status)
        .await
        .unwrap();
    assert_eq!(replaced.status.unwrap().phase.as_deref(), Some("Succeeded"));
    assert_eq!(
        replaced.spec.unwrap().active_deadline_seconds,
        Some(3600),
        "status writes keep the spec"
    );

    // A write that changes nothing is no write.
    let before = pods.get("web-0").await.unwrap();
    let same = pods
        .patch(
            "web-0",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        before.metadata.resource_version
    );

    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("someone-else".into()),
            resource_version: None,
        }),
        ..now()
    };
    assert_eq!(
        api_error(pods.delete("web-0", &wrong_uid).await).0,
        409,
        "delete preconditions hold"
    );
    let deleted = pods.delete("web-0", &now()).await.unwrap();
    let deleted = deleted.left().expect("the deleted pod comes back");
    assert_eq!(deleted.metadata.uid, created.metadata.uid);
    assert_eq!(
        api_error(pods.get("web-0").await),
        (404, "NotFound".to_owned())
    );
    assert_eq!(api_error(pods.delete("web-0", &now()).await).0, 404);
}

#[tokio::test]
async fn namespaces_scope_objects_and_take_them_along_when_deleted() {
    let double = double();
    let client = admin(&double).await;
    let pods_in = |ns: &str| Api::<Pod>::namespaced(client.clone(), ns);
    assert_eq!(
        api_error(
            pods_in("nowhere")
                .create(&PostParams::default(), &pod("nowhere", "p", None))
                .await
        ),
        (404, "NotFound".to_owned()),
        "a pod needs its namespace"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["one", "two"] {
        namespaces
            .create(&PostParams::default(), &namespace(ns, &[]))
            .await
            .unwrap();
        pods_in(ns)
            .create(&PostParams::default(), &pod(ns, "same-name", None))
            .await
            .unwrap();
    }
    let all: Api<Pod> = Api::all(client.clone());
    let listed: BTreeSet<_> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.metadata.namespace.unwrap(), p.metadata.name.unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("one".into(), "same-name".into()),
            ("two".into(), "same-name".into())
        ]
        .into()
    );
    let names: Vec<_> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, ["default", "kube-system", "one", "two"]);

    namespaces
        .delete("one", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_error(pods_in("one").get("same-name").await).0, 404);
    assert!(pods_in("two").get("same-name").await.is_ok());
    let mismatched = pod("two", "x", None);
    assert_eq!(
        api_error(
            pods_in("one")
                .create(&PostParams::default(), &mismatched)
                .await
        )
        .0,
        400
    );
}

#[tokio::test]
async fn nodes_are_cluster_scoped_and_take_json_patches_to_taints() {
    let double = double();
    let nodes: Api<Node> = Api::all(admin(&double).await);
    let node = Node {
        metadata: ObjectMeta {
            name: Some("node-a".into()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "ferrule.io/agent-not-ready".into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        }),
        ..Node::default()
    };
    let created = nodes.create(&PostParams::default(), &node).await.unwrap();
    assert_eq!(created.metadata.namespace, None);
    let remove: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/taints/0/key", "value": "ferrule.io/agent-not-ready"},
        {"op": "remove", "path": "/spec/taints/0"},
    ]))
    .unwrap();
    let patched = nodes
        .patch(
            "node-a",
            &PatchParams::default(),
            &Patch::Json::<()>(remove),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().taints, Some(vec![]));
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let status = nodes
        .patch_status("node-a", &PatchParams::default(), &Patch::Merge(ready))
        .await
        .unwrap();
    assert_eq!(status.status.unwrap().conditions.unwrap()[0].status, "True");
    assert_eq!(
        double
            .get::<Node>("", "node-a")
            .and_then(|n| n.status)
            .and_then(|s| s.conditions)
            .map(|c| c.len()),
        Some(1),
        "the direct view sees what the API wrote"
    );
}

#[tokio::test]
async fn server_side_apply_creates_merges_and_reports_field_conflicts() {
    let target = Target::new().await;
    let namespaces: Api<Namespace> = Api::all(target.admin_client());
    let name = Target::unique_name();
    target.delete_later(&name);
    let apply = |manager: &str, force: bool| {
        let mut params = PatchParams::apply(manager);
        params.force = force;
        params
    };
    let body = |labels: serde_json::Value| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    let created = namespaces
        .patch(
            &name,
            &apply("installer", false),
            &Patch::Apply(body(json!({"ferrule.io/mode": "strict"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()["ferrule.io/mode"],
        "strict"
    );
    let (code, reason) = api_error(
        namespaces
            .patch(
                &name,
                &apply("operator", false),
                &Patch::Apply(body(json!({"ferrule.io/mode": "permissive"}))),
            )
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (409, "Conflict"),
        "another manager's field"
    );
    let forced = namespaces
        .patch(
            &name,
            &apply("operator", true),
            &Patch::Apply(body(json!({"ferrule.io/mode": "permissive", "team": "a"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        forced.metadata.labels.as_ref().unwrap()["ferrule.io/mode"],
        "permissive"
    );
    // The operator stops applying `team`: it goes away; the installer's labels stay untouched.
    let dropped = namespaces
        .patch(
            &name,
            &apply("operator", false),
            &Patch::Apply(body(json!({"ferrule.io/mode": "permissive"}))),
        )
        .await
        .unwrap();
    assert!(!dropped.metadata.labels.unwrap().contains_key("team"));
    let missing_manager = namespaces
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Apply(body(json!({}))),
        )
        .await;
    assert_eq!(api_error(missing_manager).0, 400);
}

#[tokio::test]
async fn lists_page_through_a_consistent_snapshot() {
    let target = Target::new().await;
    let ns = target.unique_namespace().await;
    let pods: Api<Pod> = Api::namespaced(target.admin_client(), &ns);
    for i in 0..7 {
        pods.create(&PostParams::default(), &pod(&ns, &format!("p{i}"), None))
            .await
            .unwrap();
    }
    let first = pods.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().expect("more pages");
    // Changes after the first page do not show up in later pages of the same list.
    pods.delete("p6", &now()).await.unwrap();
    pods.create(&PostParams::default(), &pod(&ns, "p9", None))
        .await
        .unwrap();
    let mut names: Vec<String> = first
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let mut next = Some(token);
    while let Some(token) = next {
        let page = pods
            .list(&ListParams::default().limit(3).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version,
            first.metadata.resource_version
        );
        names.extend(page.items.into_iter().filter_map(|p| p.metadata.name));
        next = page.metadata.continue_.filter(|t| !t.is_empty());
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    let labelled = pods
        .list(&ListParams::default().fields("metadata.name=p9"))
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 1);
}
