//! The upgrade-or-removal decision against the Kubernetes API double.

use std::time::Duration;

use ferrule_kube_double::KubeDouble;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{Decision, decide};

const NAMESPACE: &str = "ferrule-system";
const NAME: &str = "ferrule-agent";
const AGENT_USER: &str = "system:serviceaccount:ferrule-system:ferrule-agent";
const RETRY: Duration = Duration::from_millis(300);

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: namespace.map(str::to_owned),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// The double with the install namespace, the agent's ServiceAccount and (if `daemon_set`) its
/// DaemonSet; and a client with the agent's token.
async fn setup(daemon_set: bool) -> (KubeDouble, kube::Client) {
    let double = KubeDouble::new();
    double.start_local().expect("serving the double");
    double
        .put(&Namespace {
            metadata: meta(None, NAMESPACE),
            ..Namespace::default()
        })
        .expect("namespace");
    double
        .put(&ServiceAccount {
            metadata: meta(Some(NAMESPACE), NAME),
            ..ServiceAccount::default()
        })
        .expect("service account");
    if daemon_set {
        put_daemon_set(&double, None);
    }
    let token = double
        .issue_token(NAMESPACE, NAME, &[], None, Duration::from_secs(600))
        .expect("the agent's token")
        .token;
    let client = client(&double, &token).await;
    (double, client)
}

fn put_daemon_set(double: &KubeDouble, deletion: Option<Time>) {
    let mut metadata = meta(Some(NAMESPACE), NAME);
    metadata.deletion_timestamp = deletion;
    double
        .put(&DaemonSet {
            metadata,
            ..DaemonSet::default()
        })
        .expect("daemon set");
}

async fn client(double: &KubeDouble, token: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(&double.kubeconfig(token)).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn decision(client: &kube::Client) -> Decision {
    decide(client, NAMESPACE, NAME, RETRY).await
}

#[tokio::test]
async fn an_existing_daemon_set_means_an_upgrade_and_a_missing_one_a_removal() {
    let (double, client) = setup(true).await;
    let kept = decision(&client).await;
    assert!(
        matches!(&kept, Decision::Stays(why) if why.contains("still exists")),
        "{kept:?}"
    );

    double
        .delete::<DaemonSet>(NAMESPACE, NAME)
        .expect("delete the daemon set");
    let removed = decision(&client).await;
    assert!(
        matches!(&removed, Decision::Removed(why) if why.contains("is gone")),
        "{removed:?}"
    );
}

#[tokio::test]
async fn a_daemon_set_or_namespace_being_deleted_means_a_removal() {
    let (double, client) = setup(false).await;
    put_daemon_set(&double, Some(now()));
    let deleting = decision(&client).await;
    assert!(
        matches!(&deleting, Decision::Removed(why) if why.contains("being deleted")),
        "{deleting:?}"
    );

    put_daemon_set(&double, None);
    let mut namespace = meta(None, NAMESPACE);
    namespace.deletion_timestamp = Some(now());
    double
        .put(&Namespace {
            metadata: namespace,
            ..Namespace::default()
        })
        .expect("terminating namespace");
    let terminating = decision(&client).await;
    assert!(
        matches!(&terminating, Decision::Removed(why) if why.contains("namespace ferrule-system")),
        "{terminating:?}"
    );
}

#[tokio::test]
async fn credentials_or_rbac_taken_away_mean_a_removal() {
    let (double, client) = setup(true).await;
    double.deny(AGENT_USER, "get", "daemonsets");
    let forbidden = decision(&client).await;
    assert!(
        matches!(&forbidden, Decision::Removed(why) if why.contains("403")),
        "{forbidden:?}"
    );

    let stranger = self::client(&double, "a-token-of-a-deleted-service-account").await;
    let unauthenticated = decision(&stranger).await;
    assert!(
        matches!(&unauthenticated, Decision::Removed(why) if why.contains("401")),
        "{unauthenticated:?}"
    );
}

#[tokio::test]
async fn an_unreachable_api_leaves_it_undecided() {
    let (double, client) = setup(true).await;
    double.shutdown();
    let undecided = decision(&client).await;
    assert!(
        matches!(&undecided, Decision::Undecided(why) if why.contains("DaemonSet ferrule-system/ferrule-agent")),
        "{undecided:?}"
    );
}
