//! Kubernetes mode: the pods of this node come from the API server (a watch on `spec.nodeName`)
//! and from the CNI plugin at sandbox creation; their identity is their ServiceAccount.
//!
//! - The CNI plugin's ADD enrolls a new pod before its containers start ([`CniEvents`]).
//! - A reconcile pass, on every pod or namespace event and every 30 s, enrolls meshed pods that
//!   already run (found in the host's /proc) and unenrolls pods that were deleted, finished or
//!   opted out — including those deleted while the agent was down.
//! - Once capture, CNI plugin and configuration are in place, the agent reports ready and takes
//!   the `ferrule.io/agent-not-ready` taint off its node.

mod cgroup;
mod cni_events;
mod cni_install;
mod pod_spec;
mod procfs;
mod readiness;
mod reconcile;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::KubernetesSettings;
use crate::enroll::PodLifecycle;
use crate::mesh_config::MeshConfig;

pub use readiness::serve_readiness;

/// How often pods are reconciled even without events (a missed event, a pod whose sandbox
/// process appeared after its last event).
const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes mode needs the node name (FERRULE_NODE_NAME, from spec.nodeName)")]
    NoNodeName,
    #[error("Kubernetes client configuration (KUBECONFIG or in-cluster): {0}")]
    Config(String),
    #[error("Kubernetes API client: {0}")]
    Client(#[source] kube::Error),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

/// This node's pods as the API server and the CNI plugin describe them.
pub struct KubernetesPods {
    node: String,
    settings: KubernetesSettings,
    client: Client,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    manager: Arc<dyn PodLifecycle>,
    mesh: MeshConfig,
    /// Enrollment and unenrollment happen one at a time, whoever asks (CNI or reconcile).
    ops: tokio::sync::Mutex<()>,
    changed: Notify,
    /// Both watches have listed once.
    synced: AtomicBool,
    cni_installed: AtomicBool,
    taint_removed: AtomicBool,
    uninstalling: crate::uninstall::Signal,
    /// The CNI installer's watch, awaited when uninstalling.
    cni_installer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl KubernetesPods {
    /// Connects to the API server (KUBECONFIG or in-cluster), starts the pod and namespace
    /// watches and the reconcile loop. The CNI installer stops once `uninstalling` is raised.
    pub async fn start(
        node: Option<&str>,
        settings: KubernetesSettings,
        manager: Arc<dyn PodLifecycle>,
        mesh: MeshConfig,
        uninstalling: crate::uninstall::Signal,
    ) -> Result<Arc<Self>, Error> {
        let node = node.ok_or(Error::NoNodeName)?.to_owned();
        let cni_managed_elsewhere = settings.cni.is_none();
        let kube = kube::Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        let client = Client::try_from(kube.clone()).map_err(Error::Client)?;
        let cni = settings.cni.clone();
        let (pods, pod_writer) = reflector::store();
        let (namespaces, ns_writer) = reflector::store();
        let this = Arc::new(Self {
            node: node.clone(),
            settings,
            client: client.clone(),
            pods,
            namespaces,
            manager,
            mesh,
            ops: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            synced: AtomicBool::new(false),
            // Without `cni` settings the plugin is someone else's business (a test harness).
            cni_installed: AtomicBool::new(cni_managed_elsewhere),
            taint_removed: AtomicBool::new(false),
            uninstalling: uninstalling.clone(),
            cni_installer: std::sync::Mutex::new(None),
        });
        let on_node = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let pod_events =
            reflector::reflector(pod_writer, watcher(Api::all(client.clone()), on_node));
        let ns_events = reflector::reflector(
            ns_writer,
            watcher(Api::all(client), watcher::Config::default()),
        );
        tokio::spawn(follow(
            "pods",
            pod_events.default_backoff(),
            Arc::downgrade(&this),
        ));
        tokio::spawn(follow(
            "namespaces",
            ns_events.default_backoff(),
            Arc::downgrade(&this),
        ));
        tokio::spawn(reconcile::run(Arc::downgrade(&this)));
        tokio::spawn(readiness::remove_taint_when_ready(Arc::downgrade(&this)));
        if let Some(cni) = cni {
            let installer =
                cni_install::spawn(Arc::downgrade(&this), cni, kube, uninstalling.raised());
            *this.lock_installer() = Some(installer);
        }
        Ok(this)
    }

    /// The CNI plugin is in the node's chain (the installer says so).
    pub fn set_cni_installed(&self, installed: bool) {
        self.cni_installed
            .store(installed, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock_installer(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.cni_installer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(&reflector::ObjectRef::new(name))
    }
}

/// Wakes the reconcile loop on every event of a watch; logs watch errors (the backoff retries).
async fn follow<K, S>(what: &'static str, events: S, pods: std::sync::Weak<KubernetesPods>)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let Some(pods) = pods.upgrade() else { return };
        match event {
            Ok(_) => pods.changed.notify_one(),
            Err(e) => tracing::warn!(watch = what, error = %e, "Kubernetes watch failed; retrying"),
        }
    }
}
