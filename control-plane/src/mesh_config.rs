//! The mesh configuration agents enforce, cached in memory and fanned out to every agent's
//! `Config.Watch` stream.
//!
//! The store is the source of truth; this cache mirrors it (loaded at start, updated after each
//! durable write) so that a thousand agents asking for "what changed since version N" cost a
//! range scan of memory each, not a store read. Writes are serialised so versions follow the
//! order of commits, and each new version is announced on a watch channel that every stream
//! follows (only the newest number matters; streams compute their own delta).
//!
//! With a store other replicas write too (etcd), the cache is fed only by the store's watch
//! (see `follow`), in revision order, this replica's own writes included: a write returns once
//! the watch has brought the cache to its version.

mod cache;
mod follow;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ferrule_proto::v1;
use prost::Message;
use tokio::sync::{Mutex, watch};

use crate::store::{ConfigChange, ResourceKind, Store, StoreError};
use cache::Cache;

/// Tombstones kept for resuming agents; beyond this the oldest are compacted away and agents
/// that far behind get a snapshot instead of a delta.
const MAX_TOMBSTONES: usize = 8192;

/// A change to the configuration: a resource to create or replace, or one to remove.
#[derive(Debug, Clone)]
pub enum Change {
    Put(v1::Resource),
    Remove(ResourceKind, String),
}

impl Change {
    /// The change as the store writes it: the resource encoded.
    fn to_store(&self) -> ConfigChange {
        match self {
            Self::Put(resource) => ConfigChange {
                kind: kind_of(resource),
                key: resource.key.clone(),
                value: Some(resource.encode_to_vec()),
            },
            Self::Remove(kind, key) => ConfigChange {
                kind: *kind,
                key: key.clone(),
                value: None,
            },
        }
    }
}

/// The kind of a resource, from which of its fields is set.
pub fn kind_of(resource: &v1::Resource) -> ResourceKind {
    use v1::resource::Kind;
    match resource.kind {
        Some(Kind::Bundle(_)) | None => ResourceKind::Bundle,
        Some(Kind::Workload(_)) => ResourceKind::Workload,
        Some(Kind::Policy(_)) => ResourceKind::Policy,
        Some(Kind::Revocation(_)) => ResourceKind::Revocation,
    }
}

pub fn proto_kind(kind: ResourceKind) -> v1::ResourceKind {
    match kind {
        ResourceKind::Bundle => v1::ResourceKind::Bundle,
        ResourceKind::Workload => v1::ResourceKind::Workload,
        ResourceKind::Policy => v1::ResourceKind::Policy,
        ResourceKind::Revocation => v1::ResourceKind::Revocation,
    }
}

/// How long a write to a shared store waits for the watch to deliver it.
const CATCH_UP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct MeshConfig {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cache: RwLock<Cache>,
    versions: watch::Sender<u64>,
    /// Serialises store write + cache update so the cache sees versions in commit order.
    writing: Mutex<()>,
    /// Other processes write the store too: the watch, not `apply`, updates the cache.
    shared: bool,
    /// The store revision the cache reflects, where the watch resumes.
    watched: std::sync::atomic::AtomicU64,
}

impl MeshConfig {
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let (log, watched) = store.load_config_at().await?;
        let cache = Cache::from_log(log)?;
        let (versions, _) = watch::channel(cache.version);
        Ok(Self {
            inner: Arc::new(Inner {
                cache: RwLock::new(cache),
                versions,
                writing: Mutex::new(()),
                shared: store.is_shared(),
                watched: watched.into(),
            }),
        })
    }

    /// Follows a shared store's configuration watch until the task is aborted; `None` for a
    /// store only this process writes.
    pub fn follow(&self, store: Arc<dyn Store>) -> Option<tokio::task::JoinHandle<()>> {
        self.inner
            .shared
            .then(|| tokio::spawn(follow::follow(self.clone(), store)))
    }

    /// Waits until the cache has reached `version` (or gone past it); whether it did within
    /// `timeout`.
    pub async fn caught_up(&self, version: u64, timeout: Duration) -> bool {
        let mut versions = self.subscribe();
        let reached = versions.wait_for(|current| *current >= version);
        matches!(tokio::time::timeout(timeout, reached).await, Ok(Ok(_)))
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.versions.subscribe()
    }

    pub fn version(&self) -> u64 {
        self.read().version
    }

    pub fn epoch(&self) -> String {
        self.read().epoch.clone()
    }

    /// Writes `changes` durably in one version, then publishes it; returns the version (the
    /// current one if nothing changed).
    pub async fn apply(&self, store: &dyn Store, changes: Vec<Change>) -> Result<u64, StoreError> {
        let _writing = self.inner.writing.lock().await;
        let encoded = changes.iter().map(Change::to_store).collect();
        let version = store.apply_config(encoded).await?;
        if self.inner.shared {
            if !self.caught_up(version, CATCH_UP).await {
                return Err(StoreError::Backend {
                    action: "apply a configuration version",
                    source: format!(
                        "version {version} is committed but this replica's watch has not \
                         delivered it within {CATCH_UP:?}"
                    )
                    .into(),
                });
            }
        } else {
            let mut cache = self.write();
            if version > cache.version {
                cache.apply(version, changes);
            }
        }
        if self.read().tombstones() > MAX_TOMBSTONES {
            self.compact(store).await?;
        }
        self.publish(version);
        Ok(version)
    }

    /// Announces `version` to every stream, unless a newer one was already.
    fn publish(&self, version: u64) {
        self.inner.versions.send_if_modified(|current| {
            let newer = version > *current;
            *current = (*current).max(version);
            newer
        });
    }

    /// Drops the older half of the tombstones from store and cache.
    async fn compact(&self, store: &dyn Store) -> Result<(), StoreError> {
        let Some(through) = self.read().compaction_point(MAX_TOMBSTONES / 2) else {
            return Ok(());
        };
        let dropped = store.compact_config(through).await?;
        if !self.inner.shared {
            // A shared store's watch delivers the dropped tombstones and the mark.
            self.write().compact(through);
        }
        tracing::info!(through, dropped, "compacted configuration history");
        Ok(())
    }

    /// The update that brings an agent at (`epoch`, `version`) to the current version: a delta
    /// when this cache can compute one, else a snapshot.
    pub fn update_since(&self, epoch: &str, version: u64) -> v1::ConfigUpdate {
        self.read().update_since(epoch, version)
    }

    pub fn get(&self, kind: ResourceKind, key: &str) -> Option<v1::Resource> {
        self.read().get(kind, key).cloned()
    }

    /// The version that last changed the resource; rewriting it unchanged keeps that version.
    pub fn version_of(&self, kind: ResourceKind, key: &str) -> Option<u64> {
        self.read().version_of(kind, key)
    }

    pub fn contains(&self, kind: ResourceKind, key: &str) -> bool {
        self.read().get(kind, key).is_some()
    }

    /// Every live resource of `kind`, sorted by key.
    pub fn list(&self, kind: ResourceKind) -> Vec<v1::Resource> {
        self.read().list(kind).cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.inner.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.inner.cache.write().unwrap_or_else(|e| e.into_inner())
    }
}
