//! The versioned configuration in etcd. A record's key names its kind and key, its value is a
//! presence byte and the resource's bytes, and its modification revision is its version. Every
//! write also rewrites the `config-version` key, whose modification revision is therefore the
//! configuration's version.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};

use super::records::delete_if_unchanged;
use super::{EtcdStore, revision};
use crate::store::StoreError;
use crate::store::config::{ConfigChange, ConfigLog, ConfigRecord};

const TOMBSTONE: u8 = 0;
const PRESENT: u8 = 1;
/// Tries of a write whose records other replicas changed between its read and its commit.
const APPLY_ATTEMPTS: usize = 16;

fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + value.map_or(0, <[u8]>::len));
    bytes.push(if value.is_some() { PRESENT } else { TOMBSTONE });
    bytes.extend_from_slice(value.unwrap_or_default());
    bytes
}

fn corrupt(kv: &KeyValue, why: &str) -> StoreError {
    StoreError::Corrupt {
        table: "config",
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        source: why.to_owned().into(),
    }
}

fn decode_value(kv: &KeyValue) -> Result<Option<Vec<u8>>, StoreError> {
    match kv.value().split_first() {
        Some((&PRESENT, rest)) => Ok(Some(rest.to_vec())),
        Some((&TOMBSTONE, [])) => Ok(None),
        _ => Err(corrupt(kv, "bad presence byte")),
    }
}

fn as_version(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

/// Creates the epoch unless another replica (or an earlier start) did.
pub(super) async fn ensure_epoch(store: &EtcdStore) -> Result<(), StoreError> {
    let key = store.keys.epoch();
    let epoch = hex::encode(rand::random::<[u8; 8]>());
    store
        .write(
            vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)],
            vec![TxnOp::put(key, epoch, None)],
            "create the configuration epoch",
        )
        .await?;
    Ok(())
}

/// A change reduced to what it writes: the record's key, value, and the revision it was read at.
struct Write {
    key: String,
    value: Option<Vec<u8>>,
    read_at: i64,
}

pub(super) async fn apply(
    store: &EtcdStore,
    changes: Vec<ConfigChange>,
) -> Result<u64, StoreError> {
    // The last change of a key wins, as if applied one after the other.
    let wanted: BTreeMap<String, Option<Vec<u8>>> = changes
        .into_iter()
        .map(|c| (store.keys.config(c.kind, &c.key), c.value))
        .collect();
    for _ in 0..APPLY_ATTEMPTS {
        let (writes, version) = effective_writes(store, &wanted).await?;
        if writes.is_empty() {
            return Ok(version);
        }
        let compares: Vec<Compare> = writes
            .iter()
            .map(|w| Compare::mod_revision(w.key.clone(), CompareOp::Equal, w.read_at))
            .collect();
        let puts = writes
            .iter()
            .map(|w| TxnOp::put(w.key.clone(), encode_value(w.value.as_deref()), None))
            .chain([TxnOp::put(store.keys.config_version(), Vec::new(), None)]);
        let response = store
            .write(compares, puts.collect(), "write a configuration version")
            .await?;
        if response.succeeded() {
            return Ok(revision(response.header()));
        }
    }
    Err(StoreError::Backend {
        action: "write a configuration version",
        source: "other replicas kept changing the same records".into(),
    })
}

/// The changes that change something, read at one revision, and the current version.
async fn effective_writes(
    store: &EtcdStore,
    wanted: &BTreeMap<String, Option<Vec<u8>>>,
) -> Result<(Vec<Write>, u64), StoreError> {
    let gets = wanted
        .keys()
        .map(|key| TxnOp::get(key.clone(), None))
        .chain([TxnOp::get(store.keys.config_version(), None)]);
    let read = store
        .read_txn(
            Txn::new().and_then(gets.collect::<Vec<_>>()),
            "read configuration records",
        )
        .await?;
    let mut found = read
        .op_responses()
        .into_iter()
        .map(|response| match response {
            TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
            _ => None,
        });
    let mut writes = Vec::new();
    for (key, value) in wanted {
        let existing = found.next().flatten();
        let (current, read_at) = match &existing {
            Some(kv) => (decode_value(kv)?, kv.mod_revision()),
            None => (None, 0),
        };
        if current != *value {
            writes.push(Write {
                key: key.clone(),
                value: value.clone(),
                read_at,
            });
        }
    }
    let version = found
        .next()
        .flatten()
        .map_or(0, |kv| as_version(kv.mod_revision()));
    Ok((writes, version))
}

/// The whole configuration at one revision, and that revision (where a watch resumes).
pub(crate) async fn load_at(store: &EtcdStore) -> Result<(ConfigLog, u64), StoreError> {
    let keys = &store.keys;
    let txn = Txn::new().and_then([
        TxnOp::get(keys.configs(), Some(GetOptions::new().with_prefix())),
        TxnOp::get(keys.epoch(), None),
        TxnOp::get(keys.config_version(), None),
        TxnOp::get(keys.compacted(), None),
    ]);
    let response = store.read_txn(txn, "read the configuration").await?;
    let at = revision(response.header());
    let mut parts = response.op_responses().into_iter().map(|r| match r {
        TxnOpResponse::Get(mut get) => get.take_kvs(),
        _ => Vec::new(),
    });
    let records = parts.next().unwrap_or_default();
    let mut single = || parts.next().unwrap_or_default().into_iter().next();
    let (epoch, version, compacted) = (single(), single(), single());
    let log = ConfigLog {
        epoch: epoch
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .unwrap_or_default(),
        version: version.map_or(0, |kv| as_version(kv.mod_revision())),
        compacted: compacted.as_ref().map_or(Ok(0), decode_mark)?,
        records: records
            .iter()
            .filter(|kv| !store.keys.is_config_meta(kv.key()))
            .map(|kv| record(store, kv))
            .collect::<Result<_, _>>()?,
    };
    Ok((log, at))
}

pub(super) async fn load(store: &EtcdStore) -> Result<ConfigLog, StoreError> {
    Ok(load_at(store).await?.0)
}

/// A configuration record from its etcd key and value.
pub(crate) fn record(store: &EtcdStore, kv: &KeyValue) -> Result<ConfigRecord, StoreError> {
    let (kind, key) = store
        .keys
        .parse_config(kv.key())
        .ok_or_else(|| corrupt(kv, "not a configuration key"))?;
    Ok(ConfigRecord {
        kind,
        key,
        version: as_version(kv.mod_revision()),
        value: decode_value(kv)?,
    })
}

pub(super) fn decode_mark(kv: &KeyValue) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = kv
        .value()
        .try_into()
        .map_err(|_| corrupt(kv, "compaction mark is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Raises the compaction mark to `through` first (so no agent is ever offered a delta that
/// misses a removal), then drops the tombstones up to it; returns how many.
pub(super) async fn compact(store: &EtcdStore, through: u64) -> Result<usize, StoreError> {
    raise_mark(store, through).await?;
    let mut dropped = 0;
    let records = store
        .list(&store.keys.configs(), "list configuration records")
        .await?;
    for kv in records
        .iter()
        .filter(|kv| !store.keys.is_config_meta(kv.key()))
    {
        if decode_value(kv)?.is_none() && as_version(kv.mod_revision()) <= through {
            dropped += usize::from(delete_if_unchanged(store, kv, "drop a tombstone").await?);
        }
    }
    Ok(dropped)
}

async fn raise_mark(store: &EtcdStore, through: u64) -> Result<(), StoreError> {
    let key = store.keys.compacted();
    loop {
        let existing = store.get(&key, "read the compaction mark").await?;
        let (current, read_at) = match &existing {
            Some(kv) => (decode_mark(kv)?, kv.mod_revision()),
            None => (0, 0),
        };
        if current >= through {
            return Ok(());
        }
        let raised = store
            .write(
                vec![Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    read_at,
                )],
                vec![TxnOp::put(
                    key.clone(),
                    through.to_be_bytes().to_vec(),
                    None,
                )],
                "raise the compaction mark",
            )
            .await?;
        if raised.succeeded() {
            return Ok(());
        }
    }
}
