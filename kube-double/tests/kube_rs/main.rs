//! The double as kube-rs sees it: every test talks to it over HTTP through `kube::Client`,
//! `watcher` and `reflector`, and asserts on what the client gets back.

mod auth;
mod crud;
mod custom;
mod serving;
mod tokens;
mod watch;

use std::time::Duration;

use ferrule_kube_double::{Config, KubeDouble};
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ObjectMeta;

/// A served double with the default config.
fn double() -> KubeDouble {
    served(KubeDouble::new())
}

fn served(double: KubeDouble) -> KubeDouble {
    double
        .start_local()
        .expect("serving the double on 127.0.0.1");
    double
}

/// A double that sends bookmarks every 100 ms.
fn fast_bookmarks() -> KubeDouble {
    served(KubeDouble::with_config(Config {
        bookmark_interval: Duration::from_millis(100),
        ..Config::default()
    }))
}

/// A kube client for `double` that authenticates with `token`, built from the kubeconfig the
/// double renders (as `kube::Config::infer()` would read it from `KUBECONFIG`).
async fn client(double: &KubeDouble, token: &str) -> kube::Client {
    let kubeconfig =
        Kubeconfig::from_yaml(&double.kubeconfig(token)).expect("the rendered kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the rendered kubeconfig");
    kube::Client::try_from(config).expect("a client for the double")
}

async fn admin(double: &KubeDouble) -> kube::Client {
    client(double, &double.admin_token()).await
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn pod(namespace: &str, name: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(str::to_owned),
            service_account_name: Some("default".to_owned()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// The API error a call failed with: (code, reason).
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error status, got {other:?}"),
    }
}
