//! The in-memory mirror of the configuration tables, indexed by version for deltas.

use std::collections::{BTreeMap, BTreeSet};

use ferrule_proto::v1;
use prost::Message;

use super::{Change, kind_of, proto_kind};
use crate::store::{ConfigBatch, ConfigLog, ResourceKind, StoreError};

#[derive(Debug)]
struct Entry {
    version: u64,
    /// `None`: removed at `version` (a tombstone).
    resource: Option<v1::Resource>,
}

#[derive(Debug)]
pub(super) struct Cache {
    pub(super) epoch: String,
    pub(super) version: u64,
    compacted: u64,
    entries: BTreeMap<(ResourceKind, String), Entry>,
    /// (version, kind, key) of every entry: what changed after a version is a range.
    by_version: BTreeSet<(u64, ResourceKind, String)>,
    tombstones: usize,
}

fn decode(kind: ResourceKind, key: &str, bytes: &[u8]) -> Result<v1::Resource, StoreError> {
    v1::Resource::decode(bytes).map_err(|e| StoreError::Corrupt {
        table: "config",
        key: format!("{}/{key}", kind.as_str()),
        source: e.into(),
    })
}

impl Cache {
    pub(super) fn from_log(log: ConfigLog) -> Result<Self, StoreError> {
        let mut cache = Self {
            epoch: log.epoch,
            version: log.version,
            compacted: log.compacted,
            entries: BTreeMap::new(),
            by_version: BTreeSet::new(),
            tombstones: 0,
        };
        for record in log.records {
            let resource = record
                .value
                .map(|bytes| decode(record.kind, &record.key, &bytes))
                .transpose()?;
            cache.insert(record.kind, record.key, record.version, resource);
        }
        Ok(cache)
    }

    fn insert(
        &mut self,
        kind: ResourceKind,
        key: String,
        version: u64,
        resource: Option<v1::Resource>,
    ) {
        if let Some(old) = self.entries.remove(&(kind, key.clone())) {
            self.by_version.remove(&(old.version, kind, key.clone()));
            self.tombstones -= usize::from(old.resource.is_none());
        }
        self.tombstones += usize::from(resource.is_none());
        self.by_version.insert((version, kind, key.clone()));
        self.entries
            .insert((kind, key), Entry { version, resource });
    }

    /// Mirrors a committed write: the same skip rule as the store (a change that changes
    /// nothing, including removing what is absent, keeps its old version).
    pub(super) fn apply(&mut self, version: u64, changes: Vec<Change>) {
        for change in changes {
            let (kind, key, resource) = match change {
                Change::Put(resource) => (kind_of(&resource), resource.key.clone(), Some(resource)),
                Change::Remove(kind, key) => (kind, key, None),
            };
            if self.get(kind, &key) != resource.as_ref() {
                self.insert(kind, key, version, resource);
            }
        }
        self.version = version;
    }

    /// Mirrors one revision a shared store's watch delivered: records exactly as committed
    /// (their version is the revision), tombstones compaction dropped, a raised mark. A record
    /// this build cannot decode is skipped with an error rather than stopping the watch.
    pub(super) fn apply_batch(&mut self, batch: ConfigBatch) {
        let changed = !batch.records.is_empty();
        for record in batch.records {
            let resource = record
                .value
                .map(|bytes| decode(record.kind, &record.key, &bytes))
                .transpose();
            match resource {
                Ok(resource) => self.insert(record.kind, record.key, record.version, resource),
                Err(error) => {
                    tracing::error!(%error, "skipping an unreadable configuration record")
                }
            }
        }
        for (kind, key) in batch.dropped {
            self.forget_tombstone(kind, key);
        }
        if let Some(mark) = batch.compacted {
            self.compacted = self.compacted.max(mark);
        }
        if changed {
            self.version = self.version.max(batch.revision);
        }
    }

    fn forget_tombstone(&mut self, kind: ResourceKind, key: String) {
        let entry_key = (kind, key);
        let Some(entry) = self.entries.get(&entry_key) else {
            return;
        };
        if entry.resource.is_some() {
            return; // re-created since: the deletion was of an older tombstone
        }
        let version = entry.version;
        self.entries.remove(&entry_key);
        let (kind, key) = entry_key;
        self.by_version.remove(&(version, kind, key));
        self.tombstones -= 1;
    }

    pub(super) fn get(&self, kind: ResourceKind, key: &str) -> Option<&v1::Resource> {
        self.entries
            .get(&(kind, key.to_owned()))
            .and_then(|e| e.resource.as_ref())
    }

    /// The version that last changed the live resource.
    pub(super) fn version_of(&self, kind: ResourceKind, key: &str) -> Option<u64> {
        self.entries
            .get(&(kind, key.to_owned()))
            .filter(|e| e.resource.is_some())
            .map(|e| e.version)
    }

    pub(super) fn list(&self, kind: ResourceKind) -> impl Iterator<Item = &v1::Resource> {
        self.entries
            .range((kind, String::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .filter_map(|(_, e)| e.resource.as_ref())
    }

    pub(super) fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// The version through which compacting leaves `keep` tombstones.
    pub(super) fn compaction_point(&self, keep: usize) -> Option<u64> {
        let drop = self.tombstones.checked_sub(keep)?;
        self.by_version
            .iter()
            .filter(|(_, kind, key)| self.get(*kind, key).is_none())
            .nth(drop.checked_sub(1)?)
            .map(|(version, _, _)| *version)
    }

    pub(super) fn compact(&mut self, through: u64) {
        let dead: Vec<_> = self
            .by_version
            .range(..(through + 1, ResourceKind::Bundle, String::new()))
            .filter(|(_, kind, key)| self.get(*kind, key).is_none())
            .cloned()
            .collect();
        for (version, kind, key) in dead {
            self.by_version.remove(&(version, kind, key.clone()));
            self.entries.remove(&(kind, key));
            self.tombstones -= 1;
        }
        self.compacted = self.compacted.max(through);
    }

    pub(super) fn update_since(&self, epoch: &str, version: u64) -> v1::ConfigUpdate {
        let resumable = epoch == self.epoch
            && version > 0
            && version >= self.compacted
            && version <= self.version;
        if !resumable {
            return self.snapshot();
        }
        let mut update = self.empty_update(false, version);
        let changed = self
            .by_version
            .range((version + 1, ResourceKind::Bundle, String::new())..);
        for (_, kind, key) in changed {
            match self.get(*kind, key) {
                Some(resource) => update.upserts.push(resource.clone()),
                None => update.removals.push(v1::ResourceKey {
                    kind: proto_kind(*kind) as i32,
                    key: key.clone(),
                }),
            }
        }
        update
    }

    fn snapshot(&self) -> v1::ConfigUpdate {
        let mut update = self.empty_update(true, 0);
        update.upserts = self
            .entries
            .values()
            .filter_map(|e| e.resource.clone())
            .collect();
        update
    }

    fn empty_update(&self, snapshot: bool, base_version: u64) -> v1::ConfigUpdate {
        v1::ConfigUpdate {
            epoch: self.epoch.clone(),
            version: self.version,
            snapshot,
            base_version,
            upserts: Vec::new(),
            removals: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
