//! The configuration tables of the embedded store. A record's value is its version (8 bytes,
//! big-endian), a presence byte, then the resource's bytes.

use redb::{ReadTransaction, ReadableTable};

use super::{Command, Tables, backend};
use crate::store::StoreError;
use crate::store::config::{ConfigChange, ConfigLog, ConfigRecord, ResourceKind};

pub(super) const META_EPOCH: &str = "epoch";
const META_VERSION: &str = "version";
const META_COMPACTED: &str = "compacted";

fn encode_record(version: u64, value: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(9 + value.map_or(0, <[u8]>::len));
    bytes.extend_from_slice(&version.to_be_bytes());
    bytes.push(u8::from(value.is_some()));
    bytes.extend_from_slice(value.unwrap_or_default());
    bytes
}

fn decode_record(kind: u8, key: &str, bytes: &[u8]) -> Result<ConfigRecord, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt {
        table: "config",
        key: format!("{kind}/{key}"),
        source: why.to_owned().into(),
    };
    let kind = ResourceKind::from_u8(kind).ok_or_else(|| corrupt("unknown resource kind"))?;
    if bytes.len() < 9 {
        return Err(corrupt("record shorter than its header"));
    }
    let version = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    let value = match bytes[8] {
        0 => None,
        1 => Some(bytes[9..].to_vec()),
        _ => return Err(corrupt("bad presence byte")),
    };
    Ok(ConfigRecord {
        kind,
        key: key.to_owned(),
        version,
        value,
    })
}

fn meta_u64(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Writes every change under the next version, skipping changes that change nothing. Returns
/// the version after the write (unchanged if nothing changed).
pub(super) struct ApplyConfig(pub(super) Vec<ConfigChange>);

impl Command for ApplyConfig {
    type Output = u64;

    fn apply(&self, t: &mut Tables<'_>) -> Result<u64, StoreError> {
        let current = meta_u64(
            t.config_meta
                .get(META_VERSION)
                .map_err(backend("read the config version"))?
                .as_ref()
                .map(|v| v.value()),
        );
        let next = current + 1;
        let mut changed = false;
        for change in &self.0 {
            let key = (change.kind as u8, change.key.as_str());
            let existing = t
                .config
                .get(key)
                .map_err(backend("read a config record"))?
                .map(|v| decode_record(key.0, key.1, v.value()))
                .transpose()?;
            let existing_value = existing.and_then(|r| r.value);
            if existing_value == change.value {
                continue;
            }
            let record = encode_record(next, change.value.as_deref());
            t.config
                .insert(key, record.as_slice())
                .map_err(backend("write a config record"))?;
            changed = true;
        }
        if !changed {
            return Ok(current);
        }
        t.config_meta
            .insert(META_VERSION, next.to_be_bytes().as_slice())
            .map_err(backend("write the config version"))?;
        Ok(next)
    }
}

/// Drops tombstones of versions up to `through`; returns how many.
pub(super) struct CompactConfig {
    pub(super) through: u64,
}

impl Command for CompactConfig {
    type Output = usize;

    fn apply(&self, t: &mut Tables<'_>) -> Result<usize, StoreError> {
        let mut dead = Vec::new();
        for entry in t.config.iter().map_err(backend("scan config"))? {
            let (key, value) = entry.map_err(backend("scan config"))?;
            let (kind, name) = key.value();
            let record = decode_record(kind, name, value.value())?;
            if record.value.is_none() && record.version <= self.through {
                dead.push((kind, name.to_owned()));
            }
        }
        for (kind, name) in &dead {
            t.config
                .remove((*kind, name.as_str()))
                .map_err(backend("remove a tombstone"))?;
        }
        let compacted = meta_u64(
            t.config_meta
                .get(META_COMPACTED)
                .map_err(backend("read the compaction mark"))?
                .as_ref()
                .map(|v| v.value()),
        );
        t.config_meta
            .insert(
                META_COMPACTED,
                compacted.max(self.through).to_be_bytes().as_slice(),
            )
            .map_err(backend("write the compaction mark"))?;
        Ok(dead.len())
    }
}

pub(super) fn load(txn: &ReadTransaction) -> Result<ConfigLog, StoreError> {
    let meta = txn
        .open_table(super::CONFIG_META)
        .map_err(backend("open the config meta table"))?;
    let get = |name: &str| -> Result<Option<Vec<u8>>, StoreError> {
        Ok(meta
            .get(name)
            .map_err(backend("read config meta"))?
            .map(|v| v.value().to_vec()))
    };
    let epoch = get(META_EPOCH)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let version = meta_u64(get(META_VERSION)?.as_deref());
    let compacted = meta_u64(get(META_COMPACTED)?.as_deref());
    let config = txn
        .open_table(super::CONFIG)
        .map_err(backend("open the config table"))?;
    let mut records = Vec::new();
    for entry in config.iter().map_err(backend("read config"))? {
        let (key, value) = entry.map_err(backend("read config"))?;
        let (kind, name) = key.value();
        records.push(decode_record(kind, name, value.value())?);
    }
    Ok(ConfigLog {
        epoch,
        version,
        compacted,
        records,
    })
}
