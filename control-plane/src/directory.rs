//! The workload directory as agents see it: a versioned snapshot rebuilt from the store after
//! every change and fanned out through a watch channel (only the newest version matters).

use std::sync::Arc;

use ferrule_proto::v1;
use tokio::sync::{Mutex, watch};

use crate::store::{Store, StoreError, WorkloadRecord};

#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: u64,
    pub workloads: Vec<WorkloadRecord>,
}

impl Snapshot {
    pub fn to_proto(&self) -> v1::Directory {
        v1::Directory {
            version: self.version,
            workloads: self.workloads.iter().map(workload_proto).collect(),
        }
    }
}

pub fn workload_proto(w: &WorkloadRecord) -> v1::Workload {
    v1::Workload {
        uid: w.uid.clone(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        service_account: w.service_account.clone(),
        ips: w.ips.clone(),
        node: w.node.clone(),
        spiffe_id: w.spiffe_id.clone(),
    }
}

#[derive(Debug)]
pub struct Directory {
    current: watch::Sender<Arc<Snapshot>>,
    /// Serializes change + republish so versions follow the order of writes.
    publishing: Mutex<()>,
}

impl Directory {
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let workloads = store.list_workloads().await?;
        let (current, _) = watch::channel(Arc::new(Snapshot {
            version: 1,
            workloads,
        }));
        Ok(Self {
            current,
            publishing: Mutex::new(()),
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.current.subscribe()
    }

    /// Applies `change` to the store, then publishes the new snapshot; returns its version.
    pub async fn change<T>(
        &self,
        store: &dyn Store,
        change: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<(T, u64), StoreError> {
        let _guard = self.publishing.lock().await;
        let result = change.await?;
        let workloads = store.list_workloads().await?;
        let version = self.current.borrow().version + 1;
        self.current
            .send_replace(Arc::new(Snapshot { version, workloads }));
        Ok((result, version))
    }
}
