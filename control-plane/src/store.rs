//! The control plane's persistent state behind the [`Store`] trait: join tokens, joined nodes, the
//! ledger of issued certificates, and the versioned mesh configuration (workload directory,
//! policies, revocations, trust bundle) that agents watch.
//!
//! The trait is async and says nothing about transactions or files, so that the embedded redb
//! backend ([`EmbeddedStore`], one process) and a replicated etcd backend can both sit behind it.
//! Backends share the token checks in [`check_token`] so that they refuse tokens identically.

use std::fmt;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub mod config;
mod embedded;
pub mod etcd;
#[cfg(test)]
mod tests;

pub use config::{
    ConfigBatch, ConfigChange, ConfigLog, ConfigRecord, ConfigWatch, ResourceKind, WatchError,
};
pub use embedded::EmbeddedStore;
pub use etcd::{EtcdOptions, EtcdStore, EtcdTls, Fence, Leadership};

/// Seconds since the Unix epoch; callers pass `now` so that tests control the clock.
pub type UnixSeconds = u64;

/// How long a join token is kept after it expires, used or not. Keeping a used token lets a replay
/// be reported as [`TokenError::Used`] (a possible leak worth an alert) rather than `Unknown`.
pub const TOKEN_RETENTION_AFTER_EXPIRY: UnixSeconds = 24 * 60 * 60;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A single-use, expiring credential a node presents to join. Only the SHA-256 of the secret is
/// stored, so a copy of the store cannot join nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub id: String,
    pub secret_sha256: [u8; 32],
    pub node: String,
    pub allow: Vec<String>,
    /// The networks the node's pods get addresses from; records from before they existed have none.
    #[serde(default)]
    pub pod_cidrs: Vec<IpNet>,
    pub created_at: UnixSeconds,
    pub expires_at: UnixSeconds,
}

/// A node that has joined, with the identity patterns it may request certificates for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub spiffe_id: String,
    pub allow: Vec<String>,
    /// Workloads of this node may claim only addresses inside these networks.
    #[serde(default)]
    pub pod_cidrs: Vec<IpNet>,
    pub joined_at: UnixSeconds,
}

/// One issued certificate, kept for inventory and revocation until it has expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    pub serial: String,
    pub spiffe_id: String,
    pub node: String,
    pub not_before: UnixSeconds,
    pub not_after: UnixSeconds,
}

/// A failure of the storage backend. Messages carry their cause because callers print `{e}`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened; `problem` classifies why, `source` has the details.
    #[error("cannot open store {}: {problem} ({source})", path.display())]
    Open {
        path: PathBuf,
        problem: OpenProblem,
        source: BoxError,
    },
    /// The backend failed while doing `action` (e.g. "commit a write transaction").
    #[error("store failed to {action}: {source}")]
    Backend {
        action: &'static str,
        source: BoxError,
    },
    /// A stored value does not decode: written by an incompatible version, or damaged.
    #[error("store holds an unreadable {table} record {key:?}: {source}")]
    Corrupt {
        table: &'static str,
        key: String,
        source: BoxError,
    },
    /// A record that must be unique (a join token id) is already present.
    #[error("{table} record {key:?} already exists")]
    AlreadyExists { table: &'static str, key: String },
    /// The store is shutting down or its writer stopped; nothing was written.
    #[error("store is closed")]
    Closed,
    /// A singleton job's write after this replica lost its leadership; nothing was written.
    #[error("refused to {action}: this replica is no longer the leader (fenced)")]
    Fenced { action: &'static str },
}

/// Why a store could not be opened, in an operator's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenProblem {
    /// Another process (or another handle in this one) has the store open.
    Locked,
    /// The path names a directory, not a file.
    IsDirectory,
    /// The parent directory is missing and could not be created.
    ParentDirectory,
    /// The file is not a store of a known format, or is damaged.
    Corrupt,
    /// The file was written by a version of the backend this build cannot read.
    Incompatible,
    /// Reading or writing the file failed.
    Io,
}

impl fmt::Display for OpenProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Locked => "it is locked by another process (is another control plane running?)",
            Self::IsDirectory => "it is a directory; the store path must name a file",
            Self::ParentDirectory => "its parent directory cannot be created",
            Self::Corrupt => "it is not a Ferrule store or it is corrupted",
            Self::Incompatible => "it was written in a format this version cannot open",
            Self::Io => "I/O error",
        })
    }
}

/// Why a join token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("unknown join token")]
    Unknown,
    #[error("join token already used")]
    Used,
    #[error("join token expired")]
    Expired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Stores a new token; an existing id is refused with [`StoreError::AlreadyExists`], so a used
    /// token can never be made fresh again.
    async fn create_token(&self, token: JoinToken) -> Result<(), StoreError>;
    /// Atomically checks and marks the token used: exactly one concurrent caller wins. The secret
    /// hash is compared in constant time; a wrong secret is `Unknown`. Expired if
    /// now >= expires_at. A used token stays `Used` (even past expiry) until pruned.
    async fn consume_token(
        &self,
        id: &str,
        secret_sha256: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<JoinToken, TokenError>;
    /// Refuses the token as [`Store::consume_token`] would, without writing: a guessed or spent
    /// token is turned away on a read, and never queues behind the store's writes.
    async fn verify_token(
        &self,
        id: &str,
        secret_sha256: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<(), TokenError>;
    /// Drops tokens, used or not, that expired at least [`TOKEN_RETENTION_AFTER_EXPIRY`] before
    /// `now`; returns how many. Meant to run periodically beside `prune_certificates`.
    async fn prune_tokens(&self, now: UnixSeconds) -> Result<usize, StoreError>;
    /// Inserts or replaces the node with this name.
    async fn put_node(&self, node: NodeRecord) -> Result<(), StoreError>;
    async fn get_node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError>;
    /// Deletes the node with this name; returns whether it existed.
    async fn delete_node(&self, name: &str) -> Result<bool, StoreError>;
    /// All nodes, sorted by name.
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    /// Durable when it returns.
    async fn record_certificate(&self, record: CertificateRecord) -> Result<(), StoreError>;
    /// The certificate with this serial (as issued: lower-case hex), if still listed.
    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// Certificates of `node` (all if `None`), sorted by `not_after`, then serial.
    async fn list_certificates(
        &self,
        node: Option<&str>,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Drops certificate records that expired before `before`; returns how many.
    async fn prune_certificates(&self, before: UnixSeconds) -> Result<usize, StoreError>;
    /// Writes `changes` atomically under the next configuration version and returns it; changes
    /// that would not change anything are skipped, and if none is left the version stays.
    async fn apply_config(&self, changes: Vec<ConfigChange>) -> Result<u64, StoreError>;
    /// The whole configuration, tombstones included.
    async fn load_config(&self) -> Result<ConfigLog, StoreError>;
    /// Forgets tombstones up to version `through`; agents older than that get a snapshot.
    async fn compact_config(&self, through: u64) -> Result<usize, StoreError>;
    /// Whether other processes write this store too (replicas sharing etcd). Then each process
    /// learns every configuration change, its own included, from [`Store::watch_config`].
    fn is_shared(&self) -> bool {
        false
    }
    /// The etcd store behind this one, for what only it offers (leader election).
    fn as_etcd(&self) -> Option<&EtcdStore> {
        None
    }
    /// The configuration and the revision it was read at, where a watch resumes.
    async fn load_config_at(&self) -> Result<(ConfigLog, u64), StoreError> {
        let log = self.load_config().await?;
        let version = log.version;
        Ok((log, version))
    }
    /// A watch of the configuration changes committed after revision `after`; `None` for a
    /// store only this process writes.
    async fn watch_config(&self, after: u64) -> Result<Option<Box<dyn ConfigWatch>>, StoreError> {
        let _ = after;
        Ok(None)
    }
}

/// The checks every backend applies, in this order, when a token is presented. The secret comes
/// first so that a caller without it learns nothing, not even whether the token was used.
pub(crate) fn check_token(
    token: &JoinToken,
    used: bool,
    secret_sha256: &[u8; 32],
    now: UnixSeconds,
) -> Result<(), TokenError> {
    if !constant_time_eq(&token.secret_sha256, secret_sha256) {
        return Err(TokenError::Unknown);
    }
    if used {
        return Err(TokenError::Used);
    }
    if now >= token.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// Whether a token that expired at `expires_at` may be forgotten at `now`.
pub(crate) fn token_is_prunable(expires_at: UnixSeconds, now: UnixSeconds) -> bool {
    now >= expires_at.saturating_add(TOKEN_RETENTION_AFTER_EXPIRY)
}

/// Compares without an early exit, so the time taken does not reveal how many leading bytes of a
/// guessed hash were right.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into a short-circuiting compare.
    std::hint::black_box(diff) == 0
}
