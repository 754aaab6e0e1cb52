//! The double as kube-rs sees it: every test talks to it over HTTP through `kube::Client`,
//! `watcher` and `reflector`, and asserts on what the client gets back.
//!
//! The tests that take a [`Target`] need nothing but the API, so they also run against a real
//! API server when `KUBECONFIG` is set
//! (`KUBECONFIG=~/.kube/config cargo test -p ferrule-kube-double --test kube_rs`,
//! e.g. a kind cluster; `env -u KUBECONFIG` keeps them on the double): the same bodies keep the double
//! honest. Each works inside its own namespace `ferrule-dbl-<random>`, deleted again when the
//! test ends (also on panic); pods are bound to a node no cluster has and name a scheduler no
//! cluster runs, so nothing is ever scheduled or started. The other tests need the double's own
//! controls (direct `put`/`get`, `compact`, `deny`, `advance_clock`, `issue_token`,
//! `shutdown`) or cluster-wide fixed names and stay double-only; each file says which are which.

mod auth;
mod crud;
mod custom;
mod serving;
mod tokens;
mod watch;

use std::sync::Mutex;
use std::time::Duration;

use ferrule_kube_double::{Config, KubeDouble};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ObjectMeta;
use rand::Rng;

/// A node name no cluster has: pods bound to it stay Pending and never run.
const NO_SUCH_NODE: &str = "ferrule-test-no-such-node";
/// A scheduler no cluster runs: pods created without a node are never bound to a real one.
const NO_SUCH_SCHEDULER: &str = "ferrule-test-no-such-scheduler";

/// The kubeconfig of a real cluster to run the portable tests against.
const REAL_CLUSTER_ENV: &str = "KUBECONFIG";

/// Where the portable tests run: a real API server when `KUBECONFIG` is set, else a
/// served double. Namespaces it hands out (or is told about) are deleted when it is dropped.
struct Target {
    double: Option<KubeDouble>,
    client: kube::Client,
    namespaces: Mutex<Vec<String>>,
}

impl Target {
    async fn new() -> Self {
        // Harmless on any cluster: a unique namespace per test, deleted on drop, and pods that
        // are never scheduled (see the module doc).
        if let Some(paths) = std::env::var_os(REAL_CLUSTER_ENV) {
            let config = kube::Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{REAL_CLUSTER_ENV}={paths:?}: {e}"));
            let client = kube::Client::try_from(config).expect("a client for the cluster");
            Self {
                double: None,
                client,
                namespaces: Mutex::default(),
            }
        } else {
            let double = double();
            let client = admin(&double).await;
            Self {
                double: Some(double),
                client,
                namespaces: Mutex::default(),
            }
        }
    }

    /// A client with cluster-admin rights (the double's admin token, or the kubeconfig's user).
    fn admin_client(&self) -> kube::Client {
        self.client.clone()
    }

    fn is_double(&self) -> bool {
        self.double.is_some()
    }

    /// A fresh name `ferrule-dbl-<random>` (for a namespace the test creates itself, which it
    /// hands to [`Target::delete_later`]).
    fn unique_name() -> String {
        format!("ferrule-dbl-{:08x}", rand::rng().random::<u32>())
    }

    /// Deletes the namespace `name` when the target is dropped.
    fn delete_later(&self, name: &str) {
        self.namespaces.lock().unwrap().push(name.to_owned());
    }

    /// Creates a unique namespace for the test's objects, ready for pods (a real cluster creates
    /// the `default` ServiceAccount, which pods need, shortly after the namespace).
    async fn unique_namespace(&self) -> String {
        let name = Self::unique_name();
        Api::<Namespace>::all(self.admin_client())
            .create(&PostParams::default(), &namespace(&name, &[]))
            .await
            .expect("creating the test namespace");
        self.delete_later(&name);
        if self.is_double() {
            return name;
        }
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin_client(), &name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while accounts
            .get_opt("default")
            .await
            .expect("reading the default ServiceAccount")
            .is_none()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no default ServiceAccount in {name} after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        name
    }
}

impl Drop for Target {
    /// On a real cluster, deletes the test's namespaces (asynchronously there: the cluster
    /// finishes it), also when the test panicked. Runs on a thread with its own runtime and
    /// client, as the test's runtime may be unwinding and cannot be blocked on.
    fn drop(&mut self) {
        let names = std::mem::take(self.namespaces.get_mut().unwrap_or_else(|e| e.into_inner()));
        if self.double.is_some() || names.is_empty() {
            return;
        }
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            runtime.block_on(async {
                let Ok(client) = kube::Client::try_default().await else {
                    eprintln!("cannot reach the cluster to delete {names:?}");
                    return;
                };
                let namespaces: Api<Namespace> = Api::all(client.clone());
                for name in names {
                    // Pods bound to a node without a kubelet would otherwise stay terminating
                    // (and keep the namespace) until the pod garbage collector gets to them.
                    let pods: Api<Pod> = Api::namespaced(client.clone(), &name);
                    if let Err(e) = pods.delete_collection(&now(), &ListParams::default()).await {
                        eprintln!("deleting the pods in {name}: {e}");
                    }
                    if let Err(e) = namespaces.delete(&name, &DeleteParams::default()).await {
                        eprintln!("deleting namespace {name}: {e}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

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

/// A pod that never runs anywhere (see [`NO_SUCH_NODE`], [`NO_SUCH_SCHEDULER`]).
fn pod(namespace: &str, name: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(str::to_owned),
            scheduler_name: Some(NO_SUCH_SCHEDULER.to_owned()),
            service_account_name: Some("default".to_owned()),
            containers: vec![Container {
                name: "app".to_owned(),
                image: Some("registry.k8s.io/pause:3.10".to_owned()),
                ..Container::default()
            }],
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

/// Deletes at once: a real API server otherwise keeps a pod bound to a node (whose kubelet would
/// confirm it) terminating.
fn now() -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    }
}
