//! Versioned mesh configuration as the store keeps it: resources (workloads, policies,
//! revocations, the trust bundle) keyed by kind and name, each stamped with the version that last
//! changed it. A removed resource leaves a tombstone with its removal version until compaction,
//! so "everything changed since version N" is a range read, which is what lets an agent that
//! reconnects resume with a delta instead of downloading everything again.

/// What a resource is; stored as its number, which matches the proto enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Bundle = 1,
    Workload = 2,
    Policy = 3,
    Revocation = 4,
}

impl ResourceKind {
    pub const ALL: [Self; 4] = [Self::Bundle, Self::Workload, Self::Policy, Self::Revocation];

    pub fn from_u8(n: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == n)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bundle => "bundle",
            Self::Workload => "workload",
            Self::Policy => "policy",
            Self::Revocation => "revocation",
        }
    }
}

/// One resource to write (`Some`) or remove (`None`); the value is opaque to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub kind: ResourceKind,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A resource as stored: `value` is `None` for a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRecord {
    pub kind: ResourceKind,
    pub key: String,
    pub version: u64,
    pub value: Option<Vec<u8>>,
}

/// Everything the store holds of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigLog {
    /// Random, fixed when the store is created: versions of different epochs do not compare.
    pub epoch: String,
    pub version: u64,
    /// Tombstones up to this version are gone: a delta from an older version is impossible.
    pub compacted: u64,
    pub records: Vec<ConfigRecord>,
}

/// What one committed revision of a shared store changed in the configuration, as seen by a
/// watch: written records (tombstones included), tombstones dropped by compaction, and a raised
/// compaction mark. A batch with none of these only says the watch has seen `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigBatch {
    pub revision: u64,
    pub records: Vec<ConfigRecord>,
    pub dropped: Vec<(ResourceKind, String)>,
    pub compacted: Option<u64>,
}

/// Why a configuration watch ended.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The store no longer has the history the watch asked for: reload a snapshot.
    #[error("the store compacted its history past revision {0}")]
    Compacted(u64),
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// The configuration changes other writers commit, in revision order.
#[async_trait::async_trait]
pub trait ConfigWatch: Send {
    async fn next(&mut self) -> Result<ConfigBatch, WatchError>;
}
