//! Feeds the cache from a shared store's configuration watch: every committed revision in order,
//! whichever replica wrote it. A watch that lost its history (etcd compacted past it) reloads a
//! snapshot read at one revision and watches on from the next (etcd#8668), so no change is
//! skipped or applied twice. While the store is unreachable the cache keeps the last version:
//! agents keep enforcing it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::MeshConfig;
use super::cache::Cache;
use crate::store::{ConfigBatch, Store, WatchError};

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub(super) async fn follow(config: MeshConfig, store: Arc<dyn Store>) {
    let mut retry = RETRY_MIN;
    loop {
        let after = config.inner.watched.load(Ordering::SeqCst);
        let ended = match store.watch_config(after).await {
            Ok(Some(mut watch)) => loop {
                match watch.next().await {
                    Ok(batch) => {
                        config.take(batch);
                        retry = RETRY_MIN;
                    }
                    Err(error) => break error,
                }
            },
            Ok(None) => return,
            Err(error) => WatchError::Store(error),
        };
        match ended {
            WatchError::Compacted(revision) => {
                tracing::warn!(
                    after,
                    compacted = revision,
                    "the store compacted past this replica's watch; reloading the configuration"
                );
                if let Err(error) = config.reload(store.as_ref()).await {
                    tracing::warn!(%error, "reloading the configuration failed; retrying");
                }
            }
            WatchError::Store(error) => {
                tracing::warn!(%error, after, "configuration watch lost; agents keep the last version; retrying");
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_MAX);
    }
}

impl MeshConfig {
    /// Applies one committed revision and announces it.
    fn take(&self, batch: ConfigBatch) {
        let revision = batch.revision;
        let version = {
            let mut cache = self.write();
            cache.apply_batch(batch);
            cache.version
        };
        self.inner.watched.fetch_max(revision, Ordering::SeqCst);
        self.publish(version);
    }

    /// Replaces the cache with the configuration read at one revision.
    async fn reload(&self, store: &dyn Store) -> Result<(), crate::store::StoreError> {
        let (log, at) = store.load_config_at().await?;
        let cache = Cache::from_log(log)?;
        let version = cache.version;
        *self.write() = cache;
        self.inner.watched.store(at, Ordering::SeqCst);
        self.publish(version);
        tracing::info!(
            version,
            revision = at,
            "configuration reloaded from a snapshot"
        );
        Ok(())
    }
}
