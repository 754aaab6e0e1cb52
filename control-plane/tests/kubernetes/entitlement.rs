//! `Identity.Sign` in Kubernetes mode: a node obtains the identities of the service accounts
//! whose pods are scheduled on it, while they are.

use std::time::Duration;

use ferrule_proto::v1;
use k8s_openapi::api::core::v1::Pod;
use tonic::Code;

use crate::harness::{Cluster, JoinedNode, TD, eventually, namespace, pod};

const WEB: &str = "spiffe://example.org/ns/shop/sa/web";

/// Signs `id` for `node` until the answer is `want` (the pod watch takes a moment).
async fn sign_until(
    cluster: &Cluster,
    node: &JoinedNode,
    id: &str,
    want: bool,
) -> Option<v1::Svid> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let result = cluster.sign(node, id).await;
        match (&result, want) {
            (Ok(signed), true) => return signed.svid.clone(),
            (Err(status), false) if status.code() == Code::PermissionDenied => return None,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "signing {id}: wanted {}, still got {result:?}",
            if want {
                "a certificate"
            } else {
                "PermissionDenied"
            }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_signs_a_service_account_only_while_its_pod_runs_there() {
    let cluster = Cluster::start().await;
    cluster
        .double
        .put(&namespace("shop", Some("strict")))
        .unwrap();
    let n1 = cluster.join_node("n1").await;
    let n2 = cluster.join_node("n2").await;

    let refused = sign_until(&cluster, &n1, WEB, false).await;
    assert!(refused.is_none(), "no shop/web pod anywhere yet");

    cluster.put_pod(&pod("shop", "web-1", "web", "n1", &["10.1.0.5"]));
    let svid = sign_until(&cluster, &n1, WEB, true).await.expect("svid");
    let status = cluster.sign(&n2, WEB).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "web does not run on n2: {status:?}"
    );
    assert!(
        status.message().contains("node n2 may not obtain"),
        "{status:?}"
    );
    let status = cluster
        .sign(&n1, "spiffe://example.org/ns/shop/sa/db")
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "no db pod on n1: {status:?}"
    );
    for reserved in [
        format!("spiffe://{TD}/ferrule/control-plane"),
        format!("spiffe://{TD}/ferrule/admin/ops"),
        format!("spiffe://{TD}/node/n2"),
    ] {
        let status = cluster.sign(&n1, &reserved).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{reserved}: {status:?}"
        );
    }
    cluster
        .sign(&n1, &format!("spiffe://{TD}/node/n1"))
        .await
        .expect("a node renews its own identity");

    // The pod goes: no more certificates, and the one n1 obtained for it is revoked.
    cluster.double.delete::<Pod>("shop", "web-1").unwrap();
    sign_until(&cluster, &n1, WEB, false).await;
    let certificate = eventually(
        "`ferrule certs` to list n1's web certificate as revoked",
        async || {
            let listed = cluster
                .admin()
                .list_certificates(v1::ListCertificatesRequest { node: "n1".into() })
                .await
                .unwrap()
                .into_inner()
                .certificates;
            listed
                .into_iter()
                .find(|c| c.serial == svid.serial && c.revoked)
        },
    )
    .await;
    assert_eq!(certificate.spiffe_id, WEB);
}
