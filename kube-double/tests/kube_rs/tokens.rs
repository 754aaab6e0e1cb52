//! TokenRequest and TokenReview the way the control plane attests nodes: a projected token for
//! audience `ferrule` bound to the agent pod, reviewed with its pod and node extras, and refused
//! once it is for another audience, expired, or its pod is gone.
//!
//! Against a real cluster too (`KUBECONFIG`): TokenRequest for a ServiceAccount in the test's
//! namespace, then TokenReview. Double-only: the rest puts pods and nodes directly, issues tokens
//! directly, or advances the double's clock.

use std::time::Duration;

use ferrule_kube_double::{EXTRA_NODE_NAME, EXTRA_POD_NAME, EXTRA_POD_UID, KubeDouble, Review};
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
    TokenReviewStatus,
};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::core::ObjectMeta;

use super::auth::{agent_client, service_account};
use super::{Target, admin, api_error, client, double, pod};

async fn request_token(
    double: &KubeDouble,
    account: &str,
    pod: Option<(&str, Option<String>)>,
    seconds: i64,
) -> kube::Result<TokenRequest> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin(double).await, "ferrule-system");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["ferrule".to_owned()],
            expiration_seconds: Some(seconds),
            bound_object_ref: pod.map(|(name, uid)| BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(name.to_owned()),
                uid,
            }),
        },
        ..TokenRequest::default()
    };
    accounts
        .create_subresource("token", account, &PostParams::default(), &request)
        .await
}

async fn review(double: &KubeDouble, token: &str, audience: &str) -> TokenReviewStatus {
    let reviews: Api<TokenReview> = Api::all(admin(double).await);
    let request = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: Some(vec![audience.to_owned()]),
        },
        ..TokenReview::default()
    };
    reviews
        .create(&PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
}

/// The agent's namespace, service account, node and pod; returns the pod's uid.
async fn agent_pod(double: &KubeDouble) -> String {
    agent_client(double).await;
    double
        .put(&Node {
            metadata: ObjectMeta {
                name: Some("node-a".into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        })
        .unwrap();
    let pod = double
        .put(&pod("ferrule-system", "agent-x1", Some("node-a")))
        .unwrap();
    pod.metadata.uid.unwrap()
}

#[tokio::test]
async fn bound_tokens_review_with_pod_and_node_extras_until_they_expire() {
    let double = double();
    let uid = agent_pod(&double).await;
    let issued = request_token(
        &double,
        "ferrule-agent",
        Some(("agent-x1", Some(uid.clone()))),
        600,
    )
    .await
    .unwrap();
    let status = issued.status.unwrap();
    assert!(
        status.token.len() >= 43,
        "a random token: {:?}",
        status.token
    );

    let reviewed = review(&double, &status.token, "ferrule").await;
    assert_eq!(reviewed.authenticated, Some(true), "{reviewed:?}");
    assert_eq!(reviewed.audiences, Some(vec!["ferrule".to_owned()]));
    let user = reviewed.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:ferrule-system:ferrule-agent")
    );
    let groups = user.groups.unwrap();
    for group in [
        "system:serviceaccounts",
        "system:serviceaccounts:ferrule-system",
        "system:authenticated",
    ] {
        assert!(groups.iter().any(|g| g == group), "{group} in {groups:?}");
    }
    let extra = user.extra.unwrap();
    assert_eq!(extra[EXTRA_POD_NAME], ["agent-x1"]);
    assert_eq!(extra[EXTRA_POD_UID], [uid.as_str()]);
    assert_eq!(extra[EXTRA_NODE_NAME], ["node-a"]);

    let other_audience = review(&double, &status.token, "https://kubernetes.default.svc").await;
    assert_ne!(
        other_audience.authenticated,
        Some(true),
        "a ferrule token is not for the API server"
    );
    let as_bearer = client(&double, &status.token).await;
    assert_eq!(
        api_error(
            Api::<Pod>::all(as_bearer)
                .list(&ListParams::default())
                .await
        )
        .0,
        401
    );
    assert_ne!(
        review(&double, "made-up", "ferrule").await.authenticated,
        Some(true)
    );

    double.advance_clock(Duration::from_secs(601));
    let expired = review(&double, &status.token, "ferrule").await;
    assert_ne!(expired.authenticated, Some(true), "expired: {expired:?}");
    assert!(expired.error.unwrap_or_default().contains("expired"));
}

#[tokio::test]
async fn bound_tokens_die_with_their_pod_even_if_a_namesake_comes_back() {
    let double = double();
    let uid = agent_pod(&double).await;
    let token = double
        .issue_token(
            "ferrule-system",
            "ferrule-agent",
            &["ferrule"],
            Some(("agent-x1", &uid)),
            Duration::from_secs(600),
        )
        .unwrap()
        .token;
    assert!(matches!(
        double.review_token(&token, &["ferrule"]),
        Review::Authenticated { .. }
    ));
    double.delete::<Pod>("ferrule-system", "agent-x1").unwrap();
    assert_ne!(
        review(&double, &token, "ferrule").await.authenticated,
        Some(true)
    );
    double
        .put(&pod("ferrule-system", "agent-x1", Some("node-a")))
        .unwrap();
    assert!(
        matches!(
            double.review_token(&token, &["ferrule"]),
            Review::Rejected(_)
        ),
        "a new pod with the same name has another uid"
    );
}

#[tokio::test]
async fn token_requests_check_the_account_the_pod_and_the_lifetime() {
    let double = double();
    let uid = agent_pod(&double).await;
    assert_eq!(
        api_error(request_token(&double, "nobody", None, 600).await),
        (404, "NotFound".to_owned())
    );
    assert_eq!(
        api_error(request_token(&double, "ferrule-agent", None, 60).await).0,
        422
    );
    assert_eq!(
        api_error(request_token(&double, "ferrule-agent", Some(("gone", None)), 600).await).0,
        404
    );
    let wrong_uid = Some(("agent-x1", Some(format!("{uid}-not"))));
    assert_eq!(
        api_error(request_token(&double, "ferrule-agent", wrong_uid, 600).await).0,
        409
    );
    let unbound = request_token(&double, "ferrule-agent", Some(("agent-x1", None)), 3600)
        .await
        .unwrap();
    assert!(unbound.status.unwrap().expiration_timestamp.0 > k8s_openapi::jiff::Timestamp::now());
}

#[tokio::test]
async fn requested_tokens_review_as_their_service_account_for_their_audience_only() {
    let target = Target::new().await;
    let ns = target.unique_namespace().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(target.admin_client(), &ns);
    accounts
        .create(
            &PostParams::default(),
            &service_account(&ns, "ferrule-agent"),
        )
        .await
        .unwrap();
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["ferrule".to_owned()],
            expiration_seconds: Some(600),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let token_for = |account: &str| {
        let accounts = accounts.clone();
        let (account, request) = (account.to_owned(), request.clone());
        async move {
            accounts
                .create_subresource::<_, TokenRequest>(
                    "token",
                    &account,
                    &PostParams::default(),
                    &request,
                )
                .await
        }
    };
    assert_eq!(
        api_error(token_for("nobody").await),
        (404, "NotFound".to_owned())
    );
    let token = token_for("ferrule-agent").await.unwrap().status.unwrap();
    assert!(token.expiration_timestamp.0 > k8s_openapi::jiff::Timestamp::now());

    let reviews: Api<TokenReview> = Api::all(target.admin_client());
    let review = |token: &str, audience: &str| {
        let reviews = reviews.clone();
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![audience.to_owned()]),
            },
            ..TokenReview::default()
        };
        async move {
            reviews
                .create(&PostParams::default(), &request)
                .await
                .unwrap()
                .status
                .unwrap()
        }
    };
    let reviewed = review(&token.token, "ferrule").await;
    assert_eq!(reviewed.authenticated, Some(true), "{reviewed:?}");
    assert_eq!(reviewed.audiences, Some(vec!["ferrule".to_owned()]));
    let user = reviewed.user.unwrap();
    assert_eq!(
        user.username,
        Some(format!("system:serviceaccount:{ns}:ferrule-agent"))
    );
    let groups = user.groups.unwrap();
    let own = format!("system:serviceaccounts:{ns}");
    for group in [
        "system:serviceaccounts",
        own.as_str(),
        "system:authenticated",
    ] {
        assert!(groups.iter().any(|g| g == group), "{group} in {groups:?}");
    }

    let other_audience = review(&token.token, "https://kubernetes.default.svc").await;
    assert_ne!(
        other_audience.authenticated,
        Some(true),
        "a ferrule token is not for the API server"
    );
    assert_ne!(review("made-up", "ferrule").await.authenticated, Some(true));
}
