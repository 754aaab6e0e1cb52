//! `Node.Join` with the agent pod's projected service account token.

use ferrule_proto::v1;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::core::ObjectMeta;
use tonic::Code;

use crate::harness::{AGENT_SA, Cluster, SYSTEM, TD, agent_pod};

fn sa_token(token: String) -> v1::JoinRequest {
    v1::JoinRequest {
        service_account_token: token,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_pod_token_makes_its_pod_s_node_and_can_be_used_again() {
    let cluster = Cluster::start().await;
    let token = cluster.agent_token("n1");
    let first = cluster.join(sa_token(token.clone())).await.expect("join");
    assert_eq!(first.spiffe_id, format!("spiffe://{TD}/node/n1"));
    // After a restart the agent joins again (the token is not single-use).
    let again = cluster.join(sa_token(token)).await.expect("rejoin");
    assert_eq!(again.spiffe_id, format!("spiffe://{TD}/node/n1"));
    let n2 = cluster.join_node("n2").await;
    assert_eq!(n2.spiffe_id, format!("spiffe://{TD}/node/n2"));
    let nodes = cluster
        .admin()
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["n1", "n2"]);
    assert!(nodes.iter().all(|n| n.allow.is_empty()));

    let metrics = cluster.metrics().await;
    assert!(
        metrics.contains(
            r#"ferrule_node_joins_total{method="service_account_token",result="joined",reason=""} 3"#
        ),
        "{metrics}"
    );
}

async fn refused(cluster: &Cluster, request: v1::JoinRequest) -> tonic::Status {
    match cluster.join(request).await {
        Ok(joined) => panic!("joined as {} but should be refused", joined.spiffe_id),
        Err(status) => status,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_of_other_accounts_audiences_deleted_pods_and_join_tokens_are_refused() {
    let cluster = Cluster::start().await;
    cluster
        .double
        .put(&ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                namespace: Some(SYSTEM.into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        })
        .unwrap();

    let other_sa = cluster.token("default", &["ferrule"], Some(&agent_pod("n1")));
    let status = refused(&cluster, sa_token(other_sa)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains(
            "not to the agent's service account system:serviceaccount:ferrule-system:ferrule-agent"
        ),
        "{status:?}"
    );

    let other_audience = cluster.token(AGENT_SA, &["vault"], Some(&agent_pod("n1")));
    let status = refused(&cluster, sa_token(other_audience)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // The agent pod is deleted: its token no longer makes a node.
    let orphan = cluster.agent_token("n2");
    cluster
        .double
        .delete::<Pod>(SYSTEM, &agent_pod("n2"))
        .unwrap();
    let status = refused(&cluster, sa_token(orphan)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let status = refused(
        &cluster,
        v1::JoinRequest {
            token: "fjt.0123456789abcdef.0123456789abcdef0123456789abcdef".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("Kubernetes mode")
            && status.message().contains("join tokens are not accepted"),
        "{status:?}"
    );

    let status = cluster
        .admin()
        .create_join_token(v1::CreateJoinTokenRequest {
            node: "n3".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("Kubernetes mode"), "{status:?}");

    let metrics = cluster.metrics().await;
    for reason in [
        "wrong_service_account",
        "unauthenticated",
        "wrong_credential",
    ] {
        let series = format!(
            r#"ferrule_node_joins_total{{method="service_account_token",result="refused",reason="{reason}"}}"#
        );
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_node_stays_refused() {
    let cluster = Cluster::start().await;
    cluster.join_node("n1").await;
    cluster
        .admin()
        .revoke(v1::RevokeRequest {
            target: Some(v1::revoke_request::Target::Node("n1".into())),
            reason: "compromised".into(),
            lift: false,
        })
        .await
        .expect("revoke n1");
    let status = refused(&cluster, sa_token(cluster.agent_token("n1"))).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("node n1 is revoked"),
        "{status:?}"
    );
}
