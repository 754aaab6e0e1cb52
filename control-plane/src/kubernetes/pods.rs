//! The pod index: what the control plane knows of the cluster's Pods, rebuilt from a
//! kube-runtime reflector over all Pods and Namespaces after each burst of watch events
//! ([`watch`]). Entitlements, `Workloads.Register` and the workload directory read it.

pub mod mesh;
mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ferrule_identity::TrustDomain;
use ferrule_proto::v1;
use k8s_openapi::api::core::v1::Pod;

pub use watch::spawn;

/// One pod as entitlement and claims need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    pub node: Option<String>,
    /// `None` when the namespace or service account makes no valid SPIFFE ID.
    pub spiffe_id: Option<String>,
    pub finished: bool,
}

impl PodFacts {
    /// Scheduled on `node` and not finished.
    pub fn runs_on(&self, node: &str) -> bool {
        !self.finished && self.node.as_deref() == Some(node)
    }
}

/// The index at one moment; replaced whole, never changed in place.
#[derive(Debug, Default, PartialEq)]
pub struct PodSnapshot {
    /// Every pod, by uid.
    pub pods: HashMap<String, PodFacts>,
    /// (node, SPIFFE ID) of every pod that runs: what each node may sign.
    pub running: HashSet<(String, String)>,
    /// The directory as the meshed pods make it, by uid.
    pub workloads: BTreeMap<String, v1::Workload>,
}

impl PodSnapshot {
    /// Indexes `pods`; `namespaces` maps each namespace to its labels.
    pub fn build<'a>(
        pods: impl IntoIterator<Item = &'a Pod>,
        namespaces: &HashMap<String, BTreeMap<String, String>>,
        trust_domain: &TrustDomain,
    ) -> Self {
        let mut snapshot = Self::default();
        for pod in pods {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let facts = PodFacts {
                name: pod.metadata.name.clone().unwrap_or_default(),
                service_account: mesh::service_account(pod).to_owned(),
                node: mesh::node(pod).map(str::to_owned),
                spiffe_id: mesh::spiffe_id(pod, trust_domain).map(|id| id.to_string()),
                finished: mesh::finished(pod),
                namespace,
            };
            if let (Some(node), Some(id), false) = (&facts.node, &facts.spiffe_id, facts.finished) {
                snapshot.running.insert((node.clone(), id.clone()));
            }
            if let Some(w) = mesh::workload(pod, namespaces.get(&facts.namespace), trust_domain) {
                snapshot.workloads.insert(uid.clone(), w);
            }
            snapshot.pods.insert(uid, facts);
        }
        snapshot
    }

    /// Whether a pod with the identity `id` runs on `node`.
    pub fn runs(&self, node: &str, id: &str) -> bool {
        self.running.contains(&(node.to_owned(), id.to_owned()))
    }
}

/// The current snapshot, `None` until the first list of pods and namespaces has completed.
#[derive(Debug)]
pub struct PodIndex {
    current: tokio::sync::watch::Sender<Option<Arc<PodSnapshot>>>,
}

impl Default for PodIndex {
    fn default() -> Self {
        Self {
            current: tokio::sync::watch::Sender::new(None),
        }
    }
}

impl PodIndex {
    pub fn snapshot(&self) -> Option<Arc<PodSnapshot>> {
        self.current.borrow().clone()
    }

    /// Follows replacements of the snapshot.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Arc<PodSnapshot>>> {
        self.current.subscribe()
    }

    /// Replaces the snapshot; returns the previous one.
    pub fn replace(&self, snapshot: Arc<PodSnapshot>) -> Option<Arc<PodSnapshot>> {
        self.current.send_replace(Some(snapshot))
    }
}

#[cfg(test)]
mod tests;
