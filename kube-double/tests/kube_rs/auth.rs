//! Authentication (401 without a valid bearer token), deny rules (403) and what access reviews
//! report about them: what `ferrule check` relies on to say whether RBAC is sufficient.
//!
//! Double-only: these need the double's URL, its deny rules and directly issued tokens.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::core::ObjectMeta;

use super::{admin, api_error, client, double, namespace};

const AGENT: &str = "system:serviceaccount:ferrule-system:ferrule-agent";

pub(super) fn service_account(namespace: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    }
}

/// The double with the agent's namespace and service account, and a client holding its token.
pub(super) async fn agent_client(double: &ferrule_kube_double::KubeDouble) -> kube::Client {
    double.put(&namespace("ferrule-system", &[])).unwrap();
    double
        .put(&service_account("ferrule-system", "ferrule-agent"))
        .unwrap();
    let token = double
        .issue_token(
            "ferrule-system",
            "ferrule-agent",
            &[],
            None,
            Duration::from_secs(3600),
        )
        .unwrap();
    client(double, &token.token).await
}

#[tokio::test]
async fn requests_without_a_valid_bearer_token_are_unauthorized() {
    let double = double();
    let url: http::Uri = double.url().unwrap().parse().unwrap();
    let anonymous = kube::Client::try_from(kube::Config::new(url)).unwrap();
    assert_eq!(
        api_error(
            Api::<Pod>::all(anonymous)
                .list(&ListParams::default())
                .await
        ),
        (401, "Unauthorized".to_owned())
    );
    let guessing = client(&double, "not-a-token").await;
    assert_eq!(
        api_error(
            Api::<Node>::all(guessing)
                .list(&ListParams::default())
                .await
        )
        .0,
        401
    );
    assert!(
        Api::<Node>::all(admin(&double).await)
            .list(&ListParams::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn deny_rules_forbid_requests_and_access_reviews_say_so() {
    let double = double();
    let agent = agent_client(&double).await;
    let whoami = Api::<SelfSubjectReview>::all(agent.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    assert_eq!(
        whoami
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .as_deref(),
        Some(AGENT)
    );

    let pods: Api<Pod> = Api::all(agent.clone());
    assert!(pods.list(&ListParams::default()).await.is_ok());
    double.deny(AGENT, "list", "pods");
    let denied = pods.list(&ListParams::default()).await;
    let Err(kube::Error::Api(status)) = denied else {
        panic!("expected 403, got {denied:?}");
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(
        status.message.contains(AGENT) && status.message.contains("cannot list"),
        "{}",
        status.message
    );

    let reviews: Api<SelfSubjectAccessReview> = Api::all(agent.clone());
    let can = |verb: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                resource: Some("pods".to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let list = reviews
        .create(&PostParams::default(), &can("list"))
        .await
        .unwrap();
    assert!(!list.status.unwrap().allowed, "list pods is denied");
    let watch = reviews
        .create(&PostParams::default(), &can("watch"))
        .await
        .unwrap();
    assert!(watch.status.unwrap().allowed, "watch pods is not");

    // Wildcards deny everything to everyone but the admin.
    double.deny("*", "*", "*");
    assert_eq!(
        api_error(Api::<Node>::all(agent).list(&ListParams::default()).await).0,
        403
    );
    assert!(
        Api::<Node>::all(admin(&double).await)
            .list(&ListParams::default())
            .await
            .is_ok()
    );
    double.clear_denies();
    assert!(pods.list(&ListParams::default()).await.is_ok());
    assert!(double.requests("list", "pods") >= 3, "requests are counted");
}
