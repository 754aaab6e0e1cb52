//! The workload directory in Kubernetes mode comes from Pod objects; nodes' claims change
//! nothing.

use std::time::Duration;

use ferrule_proto::v1;
use k8s_openapi::api::core::v1::Pod;
use tonic::Code;

use crate::harness::{Cluster, control_plane_user, eventually, namespace, pod};

/// Waits until the directory entry of `uid` satisfies `check` (`None`: is absent).
async fn directory_shows(
    cluster: &Cluster,
    what: &str,
    uid: &str,
    check: impl Fn(Option<&v1::Workload>) -> bool,
) {
    eventually(what, async || {
        check(cluster.directory().get(uid)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_follows_pods_and_namespace_labels() {
    let cluster = Cluster::start().await;
    cluster
        .double
        .put(&namespace("shop", Some("strict")))
        .unwrap();
    cluster.double.put(&namespace("bank", None)).unwrap();

    // Created and scheduled, no IP yet: not a destination.
    let uid = cluster.put_pod(&pod("shop", "web-1", "web", "n1", &[]));
    let teller = cluster.put_pod(&pod("bank", "teller-1", "teller", "n2", &["10.2.0.7"]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cluster.directory().is_empty(), "{:?}", cluster.directory());

    // The kubelet reports the sandbox IP.
    cluster.put_pod(&pod("shop", "web-1", "web", "n1", &["10.1.0.5"]));
    directory_shows(&cluster, "web-1 with its IP", &uid, |w| {
        w.is_some_and(|w| w.ips == ["10.1.0.5"])
    })
    .await;
    let w = cluster.directory()[&uid].clone();
    assert_eq!(
        (
            w.name.as_str(),
            w.namespace.as_str(),
            w.node.as_str(),
            w.spiffe_id.as_str()
        ),
        ("web-1", "shop", "n1", "spiffe://example.org/ns/shop/sa/web")
    );
    assert_eq!(w.labels.get("app").map(String::as_str), Some("web-1"));

    // The bank namespace enrolls: its pod appears; shop leaves: web-1 goes.
    cluster
        .double
        .put(&namespace("bank", Some("enabled")))
        .unwrap();
    directory_shows(
        &cluster,
        "teller-1 after its namespace enrolled",
        &teller,
        |w| w.is_some(),
    )
    .await;
    cluster.double.put(&namespace("shop", None)).unwrap();
    directory_shows(&cluster, "web-1 gone after shop left the mesh", &uid, |w| {
        w.is_none()
    })
    .await;
    cluster
        .double
        .put(&namespace("shop", Some("permissive")))
        .unwrap();
    directory_shows(&cluster, "web-1 back", &uid, |w| w.is_some()).await;

    // Deleted: gone.
    cluster.double.delete::<Pod>("shop", "web-1").unwrap();
    directory_shows(&cluster, "web-1 gone after its deletion", &uid, |w| {
        w.is_none()
    })
    .await;
    assert_eq!(cluster.directory().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relist_after_410_removes_pods_that_vanished_meanwhile() {
    let cluster = Cluster::start().await;
    cluster
        .double
        .put(&namespace("shop", Some("strict")))
        .unwrap();
    let gone = cluster.put_pod(&pod("shop", "web-1", "web", "n1", &["10.1.0.5"]));
    let kept = cluster.put_pod(&pod("shop", "web-2", "web", "n2", &["10.1.0.6"]));
    directory_shows(&cluster, "web-1", &gone, |w| w.is_some()).await;
    directory_shows(&cluster, "web-2", &kept, |w| w.is_some()).await;

    // The control plane cannot watch or list pods; its watch expires (410) and web-1 is deleted
    // while it cannot see it.
    let user = control_plane_user();
    let lists_before = cluster.double.requests("list", "pods");
    cluster.double.deny(&user, "list", "pods");
    cluster.double.deny(&user, "watch", "pods");
    cluster.double.compact();
    cluster.double.delete::<Pod>("shop", "web-1").unwrap();
    eventually("the control plane to try relisting pods", async || {
        (cluster.double.requests("list", "pods") > lists_before).then_some(())
    })
    .await;
    assert!(cluster.directory().contains_key(&gone), "nothing seen yet");
    cluster.double.clear_denies();
    directory_shows(&cluster, "web-1 removed by the relist", &gone, |w| {
        w.is_none()
    })
    .await;
    assert!(cluster.directory().contains_key(&kept));
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_claims_change_nothing() {
    let cluster = Cluster::start().await;
    cluster
        .double
        .put(&namespace("shop", Some("strict")))
        .unwrap();
    let n1 = cluster.join_node("n1").await;
    let n2 = cluster.join_node("n2").await;
    let web = cluster.put_pod(&pod("shop", "web-1", "web", "n1", &["10.1.0.5"]));
    let api = cluster.put_pod(&pod("shop", "api-1", "api", "n2", &["10.1.1.5"]));
    directory_shows(&cluster, "web-1", &web, |w| w.is_some()).await;
    directory_shows(&cluster, "api-1", &api, |w| w.is_some()).await;
    let before = cluster.directory();

    // n1 registers its own pod: answered from the Pod, whatever the claim says.
    let answer = cluster
        .register(
            &n1,
            v1::Workload {
                uid: web.clone(),
                namespace: "shop".into(),
                service_account: "admin".into(),
                ips: vec!["10.1.1.5".into()],
                ..Default::default()
            },
        )
        .await
        .expect("n1 runs web-1");
    assert_eq!(answer.spiffe_id, "spiffe://example.org/ns/shop/sa/web");

    // n2 claims n1's pod, and claims api-1 has web-1's IP.
    let status = cluster
        .register(
            &n2,
            v1::Workload {
                uid: web.clone(),
                namespace: "shop".into(),
                service_account: "web".into(),
                ips: vec!["10.1.1.5".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("no running Pod with uid {web} on node n2")),
        "{status:?}"
    );
    cluster
        .register(
            &n2,
            v1::Workload {
                uid: api.clone(),
                namespace: "shop".into(),
                service_account: "api".into(),
                ips: vec!["10.1.0.5".into()],
                ..Default::default()
            },
        )
        .await
        .expect("api-1 runs on n2");
    let gone = cluster.unregister(&n2, &web).await.expect("a no-op");
    assert!(gone.existed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.directory(), before, "claims changed the directory");
}
