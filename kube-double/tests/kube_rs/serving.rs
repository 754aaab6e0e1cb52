//! Serving: kubeconfig files, listeners on any address, shutdown and restart, discovery, and the
//! direct helpers' `wait_for`.
//!
//! Double-only: all of it is about serving the double itself (listeners, shutdown, its version).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ferrule_kube_double::{DirectError, KubeDouble};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, GroupVersionKind, ListParams, Patch, PatchParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use serde_json::json;

use super::{admin, client, double, namespace, pod};

#[tokio::test]
async fn written_kubeconfigs_are_private_and_kube_reads_them() {
    let double = double();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    double
        .write_kubeconfig(&path, &double.admin_token())
        .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(namespaces.items.len(), 2, "default and kube-system");
}

#[tokio::test]
async fn serves_on_whatever_address_the_listener_has() {
    let double = KubeDouble::new();
    let address = double
        .serve(TcpListener::bind("127.0.0.7:0").unwrap())
        .unwrap();
    assert_eq!(address.ip().to_string(), "127.0.0.7");
    assert!(
        double
            .kubeconfig("t")
            .contains(&format!("http://{address}"))
    );
    let pods = Api::<Pod>::all(admin(&double).await);
    assert!(pods.list(&ListParams::default()).await.is_ok());

    if let Ok(v6) = TcpListener::bind("[::1]:0") {
        let double = KubeDouble::new();
        double.serve(v6).unwrap();
        let nodes = Api::<Namespace>::all(admin(&double).await);
        assert!(
            nodes.list(&ListParams::default()).await.is_ok(),
            "over {:?}",
            double.url()
        );
    }
}

#[tokio::test]
async fn shutdown_ends_watches_and_a_restart_keeps_the_state() {
    let double = double();
    double.put(&namespace("shop", &[])).unwrap();
    let pods: Api<Pod> = Api::namespaced(admin(&double).await, "shop");
    let mut stream = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    double.put(&pod("shop", "a", None)).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .is_some()
    );

    double.shutdown();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch ends with the server");
    assert!(
        pods.list(&ListParams::default()).await.is_err(),
        "nothing listens any more"
    );

    double.start_local().unwrap();
    let again: Api<Pod> = Api::namespaced(client(&double, &double.admin_token()).await, "shop");
    let names: Vec<_> = again
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names, ["a"]);
}

#[tokio::test]
async fn discovery_finds_the_ferrule_crd_with_its_status_subresource() {
    let double = double();
    let discovery = Discovery::new(admin(&double).await).run().await.unwrap();
    let gvk = GroupVersionKind::gvk("ferrule.dev", "v1alpha1", "AuthorizationPolicy");
    let (resource, capabilities) = discovery
        .resolve_gvk(&gvk)
        .expect("the ferrule.dev CRD is discoverable");
    assert_eq!(resource.plural, "authorizationpolicies");
    assert_eq!(capabilities.scope, Scope::Namespaced);
    assert!(
        capabilities
            .subresources
            .iter()
            .any(|(r, _)| r.plural == "status")
    );
    let (_, node_caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Node"))
        .unwrap();
    assert_eq!(node_caps.scope, Scope::Cluster);
    assert!(discovery.has_group("authentication.k8s.io"));
}

#[tokio::test]
async fn wait_for_sees_writes_made_through_the_api() {
    let double = double();
    double.put(&namespace("shop", &[])).unwrap();
    double.put(&pod("shop", "a", None)).unwrap();
    let pods: Api<Pod> = Api::namespaced(admin(&double).await, "shop");
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = json!({"status": {"phase": "Running"}});
        pods.patch_status("a", &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    });
    let phase = double
        .wait_for(Duration::from_secs(5), |d| {
            d.get::<Pod>("shop", "a")?
                .status?
                .phase
                .filter(|p| p == "Running")
        })
        .await
        .unwrap();
    assert_eq!(phase, "Running");
    writer.await.unwrap();
    let never = double
        .wait_for(Duration::from_millis(100), |d| d.get::<Pod>("shop", "b"))
        .await;
    assert!(
        matches!(never, Err(DirectError::Timeout(_))),
        "got {never:?}"
    );
}
