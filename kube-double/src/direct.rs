//! Direct access for tests acting as other cluster parties (a "kubelet" setting pod status, an
//! operator creating nodes): typed reads and writes with k8s-openapi types or derived custom
//! resources, without HTTP, plus waiting for a condition on the store. Direct writes produce the
//! same resource versions and watch events as API writes, may set `.status` together with the
//! rest, and never fail on a stale resourceVersion.

use std::time::Duration;

use kube_core::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::double::KubeDouble;
use crate::registry::Gvr;
use crate::store::{Origin, Preconditions, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error("converting the object to or from JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the condition did not hold within {0:?}")]
    Timeout(Duration),
}

impl From<StoreError> for DirectError {
    fn from(e: StoreError) -> Self {
        DirectError::Store(Box::new(e))
    }
}

/// The group, version and plural kube-rs would address `K` with.
pub fn gvr_of<K: Resource<DynamicType = ()>>() -> Gvr {
    Gvr::new(&K::group(&()), &K::version(&()), &K::plural(&()))
}

impl KubeDouble {
    /// Creates the object, or replaces it (keeping uid and creationTimestamp, and `.status` when
    /// `object` has none) when it exists.
    pub fn put<K>(&self, object: &K) -> Result<K, DirectError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let stored = self.put_value(&gvr_of::<K>(), serde_json::to_value(object)?)?;
        Ok(serde_json::from_value(stored)?)
    }

    /// Creates the object; `StoreError::AlreadyExists` when it exists.
    pub fn create<K>(&self, object: &K) -> Result<K, DirectError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let gvr = gvr_of::<K>();
        let value = serde_json::to_value(object)?;
        let mut state = self.inner.state();
        let namespace = if state.store.info(&gvr)?.namespaced {
            object.meta().namespace.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let stored = state
            .store
            .create(&gvr, &namespace, value, Origin::Direct)?;
        Ok(serde_json::from_value(stored)?)
    }

    /// The object, if it exists (`namespace` is ignored for cluster-scoped resources).
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let value = self.get_value(&gvr_of::<K>(), namespace, name)?;
        serde_json::from_value(value).ok()
    }

    /// Every object of `K` in `namespace` (`None`: all namespaces), by namespace and name.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let gvr = gvr_of::<K>();
        let state = self.inner.state();
        state
            .store
            .iter(&gvr)
            .filter(|(key, _)| namespace.is_none_or(|ns| key.0 == ns))
            .filter_map(|(_, value)| serde_json::from_value(value.clone()).ok())
            .collect()
    }

    /// Deletes the object at once; `StoreError::NotFound` when it does not exist.
    pub fn delete<K>(&self, namespace: &str, name: &str) -> Result<(), DirectError>
    where
        K: Resource<DynamicType = ()>,
    {
        self.delete_value(&gvr_of::<K>(), namespace, name)?;
        Ok(())
    }

    /// `put` for any served resource, as JSON.
    pub fn put_value(&self, gvr: &Gvr, object: Value) -> Result<Value, StoreError> {
        self.inner.state().store.put(gvr, object)
    }

    pub fn get_value(&self, gvr: &Gvr, namespace: &str, name: &str) -> Option<Value> {
        let state = self.inner.state();
        let namespace = if state.store.info(gvr).ok()?.namespaced {
            namespace
        } else {
            ""
        };
        state.store.get(gvr, namespace, name).ok().cloned()
    }

    pub fn delete_value(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
    ) -> Result<Value, StoreError> {
        let mut state = self.inner.state();
        let namespace = if state.store.info(gvr)?.namespaced {
            namespace
        } else {
            ""
        };
        state
            .store
            .delete(gvr, namespace, name, &Preconditions::default())
    }

    /// Waits until `check` returns `Some`, re-checking after every write (and every 50 ms).
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&KubeDouble) -> Option<T>,
    ) -> Result<T, DirectError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.inner.state().store.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(found) = check(self) {
                return Ok(found);
            }
            let pause = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                _ = changes.changed() => {}
                () = pause => {}
                () = tokio::time::sleep_until(deadline) => return Err(DirectError::Timeout(timeout)),
            }
        }
    }
}
