//! The pod and namespace watches: two reflectors over the whole cluster. After each burst of
//! events the index is rebuilt from the reflector caches and the directory brought in line
//! with it. A relist (after `410 Gone` or a broken watch) swaps the caches whole, so pods that
//! vanished meanwhile go.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinHandle;

use super::{PodIndex, PodSnapshot, mesh};
use crate::kubernetes::{burst, directory};
use crate::state::ControlPlane;

/// A directory update that failed (store unavailable) is tried again after this long, even
/// when no event comes.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pods,
    Namespaces,
}

/// Whether each watch has completed its first list.
#[derive(Debug, Default)]
struct Synced {
    pods: bool,
    namespaces: bool,
}

impl Synced {
    fn note(&mut self, (kind, event): (Kind, Result<bool, watcher::Error>)) {
        match event {
            Ok(true) => match kind {
                Kind::Pods => self.pods = true,
                Kind::Namespaces => self.namespaces = true,
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(?kind, error = %e, "Kubernetes watch failed; retrying"),
        }
    }
}

/// Watches pods and namespaces until the task is aborted, keeping `index` and the directory
/// current.
pub fn spawn(cp: Arc<ControlPlane>, client: Client, index: Arc<PodIndex>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (pods, pod_writer) = reflector::store::<Pod>();
        let (namespaces, namespace_writer) = reflector::store::<Namespace>();
        let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(mesh::strip)
            .reflect(pod_writer)
            .map(|e| (Kind::Pods, e.map(|e| init_done(&e))));
        let namespace_events = watcher(Api::<Namespace>::all(client), watcher::Config::default())
            .default_backoff()
            .modify(|ns| {
                ns.metadata.managed_fields = None;
                ns.metadata.annotations = None;
                ns.spec = None;
            })
            .reflect(namespace_writer)
            .map(|e| (Kind::Namespaces, e.map(|e| init_done(&e))));
        let events = futures::stream::select(pod_events, namespace_events);
        follow(cp, index, events, pods, namespaces).await;
    })
}

async fn follow(
    cp: Arc<ControlPlane>,
    index: Arc<PodIndex>,
    events: impl Stream<Item = (Kind, Result<bool, watcher::Error>)>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
) {
    let mut events = std::pin::pin!(events);
    let mut synced = Synced::default();
    let mut failed = false;
    while let Some(burst) = burst::next(&mut events, failed.then_some(RETRY)).await {
        burst.into_iter().for_each(|event| synced.note(event));
        if !(synced.pods && synced.namespaces) {
            continue;
        }
        let snapshot = Arc::new(snapshot(&cp, &pods, &namespaces));
        let previous = index.replace(snapshot.clone());
        if previous.is_none() {
            tracing::info!(
                pods = snapshot.pods.len(),
                meshed = snapshot.workloads.len(),
                "Kubernetes pods and namespaces synchronised"
            );
        }
        failed = match directory::sync(&cp, previous.as_deref(), &snapshot).await {
            Ok(_) => false,
            Err(e) => {
                tracing::error!(error = %e, "updating the workload directory from Pods failed; retrying");
                true
            }
        };
    }
}

fn init_done<K>(event: &watcher::Event<K>) -> bool {
    matches!(event, watcher::Event::InitDone)
}

fn snapshot(cp: &ControlPlane, pods: &Store<Pod>, namespaces: &Store<Namespace>) -> PodSnapshot {
    let labels: HashMap<String, BTreeMap<String, String>> = namespaces
        .state()
        .iter()
        .filter_map(|ns| {
            let name = ns.metadata.name.clone()?;
            Some((name, ns.metadata.labels.clone().unwrap_or_default()))
        })
        .collect();
    let pods = pods.state();
    PodSnapshot::build(pods.iter().map(|p| p.as_ref()), &labels, &cp.trust_domain)
}
