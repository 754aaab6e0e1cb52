//! The configuration watch: every change under the configuration prefix after a revision, in
//! revision order, on the store's own watch connection.

use std::collections::{BTreeMap, VecDeque};

use etcd_client::{Client, EventType, WatchOptions, WatchResponse, WatchStream};

use super::config_log::{decode_mark, record};
use super::{EtcdStore, backend, revision};
use crate::store::StoreError;
use crate::store::config::{ConfigBatch, ConfigWatch, WatchError};

pub(super) struct EtcdConfigWatch {
    stream: WatchStream,
    store: EtcdStore,
    ready: VecDeque<ConfigBatch>,
}

pub(super) async fn open(
    store: &EtcdStore,
    mut client: Client,
    after: u64,
) -> Result<EtcdConfigWatch, StoreError> {
    let start = i64::try_from(after.saturating_add(1)).unwrap_or(i64::MAX);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_progress_notify();
    let stream = client
        .watch(store.keys.configs(), Some(options))
        .await
        .map_err(backend("watch the configuration"))?;
    Ok(EtcdConfigWatch {
        stream,
        store: store.shallow_clone(),
        ready: VecDeque::new(),
    })
}

#[async_trait::async_trait]
impl ConfigWatch for EtcdConfigWatch {
    async fn next(&mut self) -> Result<ConfigBatch, WatchError> {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return Ok(batch);
            }
            let response = self
                .stream
                .message()
                .await
                .map_err(backend("watch the configuration"))?
                .ok_or_else(|| StoreError::Backend {
                    action: "watch the configuration",
                    source: "etcd closed the watch".into(),
                })?;
            self.take(response)?;
        }
    }
}

impl EtcdConfigWatch {
    /// Queues the response's events as one batch per revision (etcd never splits a revision
    /// across responses), or a progress batch when it carries none.
    fn take(&mut self, response: WatchResponse) -> Result<(), WatchError> {
        if response.compact_revision() > 0 {
            return Err(WatchError::Compacted(
                u64::try_from(response.compact_revision()).unwrap_or(0),
            ));
        }
        if response.canceled() {
            return Err(WatchError::Store(StoreError::Backend {
                action: "watch the configuration",
                source: format!("etcd canceled the watch: {}", response.cancel_reason()).into(),
            }));
        }
        if response.events().is_empty() {
            if !response.created() {
                self.ready.push_back(ConfigBatch {
                    revision: revision(response.header()),
                    ..ConfigBatch::default()
                });
            }
            return Ok(());
        }
        let mut batches: BTreeMap<i64, ConfigBatch> = BTreeMap::new();
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let batch = batches
                .entry(kv.mod_revision())
                .or_insert_with(|| ConfigBatch {
                    revision: u64::try_from(kv.mod_revision()).unwrap_or(0),
                    ..ConfigBatch::default()
                });
            let keys = &self.store.keys;
            match event.event_type() {
                EventType::Put if kv.key() == keys.compacted().as_bytes() => {
                    batch.compacted = Some(decode_mark(kv)?);
                }
                EventType::Put if keys.is_config_meta(kv.key()) => {}
                EventType::Put => batch.records.push(record(&self.store, kv)?),
                EventType::Delete => {
                    if let Some(dropped) = keys.parse_config(kv.key()) {
                        batch.dropped.push(dropped);
                    }
                }
            }
        }
        self.ready.extend(batches.into_values());
        Ok(())
    }
}
