//! The etcd backend: every record under one key prefix of an etcd cluster, shared by any number
//! of control-plane replicas.
//!
//! Every write that must be atomic is an etcd transaction that compares the modification
//! revisions it read, so concurrent replicas never lose each other's writes: a join token is
//! consumed exactly once, a configuration write lands whole or not at all. The configuration's
//! version is the etcd revision of the transaction that wrote it (comparable across replicas);
//! a removed resource stays as a tombstone key until compaction, so "what changed since version
//! N" is a range read that etcd's own history compaction never affects.
//!
//! etcd's default `--max-txn-ops` (128) bounds how many resources one configuration write may
//! change; run etcd with a larger value (the test harness uses 10,000) for large directories.

mod config_log;
mod election;
mod keys;
mod records;
mod replicas;
mod tokens;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    TlsOptions, Txn, TxnOp, TxnResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::config::{ConfigChange, ConfigLog, ConfigWatch};
use super::{CertificateRecord, JoinToken, NodeRecord, Store, StoreError, TokenError, UnixSeconds};
pub use election::Leadership;
use keys::Keys;
pub use replicas::{HEARTBEAT_LEASE, ReplicaRecord};

/// How to reach the etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// `https://host:port` (or `http://` without TLS) of each member.
    pub endpoints: Vec<String>,
    /// Everything the control plane keeps lives under this key prefix.
    pub prefix: String,
    /// Client certificate authentication to etcd; `None` for plaintext (tests, loopback only).
    pub tls: Option<EtcdTls>,
    /// One request's deadline; a call that exceeds it fails with `UNAVAILABLE` upstream.
    pub request_timeout: Duration,
}

/// PEM files for mutual TLS with etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub const DEFAULT_PREFIX: &str = "/ferrule/";
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const KEEPALIVE: Duration = Duration::from_secs(10);

pub struct EtcdStore {
    /// Set on the handle a leader's singleton jobs write through.
    fence: Option<Fence>,
    client: Client,
    /// Watches get a connection of their own: etcd 3.4 starves watches that share one with
    /// heavy reads (etcd#15402).
    watch_client: Client,
    keys: Keys,
    endpoints: Vec<String>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects and makes sure the configuration has an epoch. Fails when no member answers.
    pub async fn connect(options: &EtcdOptions) -> Result<Self, StoreError> {
        let client = connect_client(options).await?;
        let watch_client = connect_client(options).await?;
        let store = Self {
            fence: None,
            client,
            watch_client,
            keys: Keys::new(&options.prefix),
            endpoints: options.endpoints.clone(),
        };
        config_log::ensure_epoch(&store).await?;
        Ok(store)
    }

    /// Another handle on the same connections.
    fn shallow_clone(&self) -> Self {
        Self {
            fence: self.fence.clone(),
            client: self.client.clone(),
            watch_client: self.watch_client.clone(),
            keys: self.keys.clone(),
            endpoints: self.endpoints.clone(),
        }
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    /// The record at `key` with its revisions, if present.
    async fn get(&self, key: &str, action: &'static str) -> Result<Option<KeyValue>, StoreError> {
        let mut response = self
            .client()
            .get(key, None)
            .await
            .map_err(backend(action))?;
        Ok(response.take_kvs().into_iter().next())
    }

    /// Every record under `prefix`, in key order.
    async fn list(&self, prefix: &str, action: &'static str) -> Result<Vec<KeyValue>, StoreError> {
        let mut response = self
            .client()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(backend(action))?;
        Ok(response.take_kvs())
    }

    /// A transaction that only reads (at one revision).
    async fn read_txn(&self, txn: Txn, action: &'static str) -> Result<TxnResponse, StoreError> {
        self.client().txn(txn).await.map_err(backend(action))
    }

    /// Runs `ops` if `compares` hold, and, for a fenced handle, only while this replica still
    /// holds the leadership its fence names: a write of a deposed leader is refused with
    /// [`StoreError::Fenced`] (a lease alone is not a lock: etcd's why.md).
    async fn write(
        &self,
        mut compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        action: &'static str,
    ) -> Result<TxnResponse, StoreError> {
        if let Some(fence) = &self.fence {
            compares.push(fence.compare());
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self.client().txn(txn).await.map_err(backend(action))?;
        if !response.succeeded()
            && let Some(fence) = &self.fence
            && !fence.holds(self).await?
        {
            return Err(StoreError::Fenced { action });
        }
        Ok(response)
    }

    /// This store, with every write conditional on `fence` (a leadership).
    pub fn fenced(&self, fence: Fence) -> Self {
        Self {
            fence: Some(fence),
            ..self.shallow_clone()
        }
    }
}

/// A leadership as etcd's election API records it: the leader key and its creation revision.
/// Comparing that revision in a write's transaction makes the write fail once another replica
/// was elected, even if this one has not noticed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: Vec<u8>,
    pub create_revision: i64,
}

impl Fence {
    fn compare(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.create_revision)
    }

    async fn holds(&self, store: &EtcdStore) -> Result<bool, StoreError> {
        let key = String::from_utf8_lossy(&self.key).into_owned();
        let current = store.get(&key, "check the leadership").await?;
        Ok(current.is_some_and(|kv| kv.create_revision() == self.create_revision))
    }
}

async fn connect_client(options: &EtcdOptions) -> Result<Client, StoreError> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(options.request_timeout)
        .with_keep_alive(KEEPALIVE, options.request_timeout)
        .with_keep_alive_while_idle(true);
    if let Some(tls) = &options.tls {
        connect = connect.with_tls(tls_options(tls)?);
    }
    Client::connect(&options.endpoints, Some(connect))
        .await
        .map_err(backend("connect to etcd"))
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, StoreError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| StoreError::Backend {
            action: "read the etcd TLS files",
            source: format!("{}: {e}", path.display()).into(),
        })
    };
    Ok(TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
        .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?)))
}

fn backend(action: &'static str) -> impl Fn(etcd_client::Error) -> StoreError {
    move |e| StoreError::Backend {
        action,
        source: Box::new(e),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend {
        action: "encode a record",
        source: e.into(),
    })
}

fn decode<T: DeserializeOwned>(table: &'static str, kv: &KeyValue) -> Result<T, StoreError> {
    serde_json::from_slice(kv.value()).map_err(|e| StoreError::Corrupt {
        table,
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        source: e.into(),
    })
}

/// The etcd revision a response was served at.
fn revision(header: Option<&etcd_client::ResponseHeader>) -> u64 {
    header.map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0))
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn create_token(&self, token: JoinToken) -> Result<(), StoreError> {
        tokens::create(self, token).await
    }

    async fn consume_token(
        &self,
        id: &str,
        secret_sha256: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<JoinToken, TokenError> {
        tokens::consume(self, id, secret_sha256, now).await
    }

    async fn verify_token(
        &self,
        id: &str,
        secret_sha256: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<(), TokenError> {
        tokens::verify(self, id, secret_sha256, now).await
    }

    async fn prune_tokens(&self, now: UnixSeconds) -> Result<usize, StoreError> {
        tokens::prune(self, now).await
    }

    async fn put_node(&self, node: NodeRecord) -> Result<(), StoreError> {
        records::put_node(self, node).await
    }

    async fn get_node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        records::get_node(self, name).await
    }

    async fn delete_node(&self, name: &str) -> Result<bool, StoreError> {
        records::delete_node(self, name).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        records::list_nodes(self).await
    }

    async fn record_certificate(&self, record: CertificateRecord) -> Result<(), StoreError> {
        records::record_certificate(self, record).await
    }

    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        records::get_certificate(self, serial).await
    }

    async fn list_certificates(
        &self,
        node: Option<&str>,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        records::list_certificates(self, node).await
    }

    async fn prune_certificates(&self, before: UnixSeconds) -> Result<usize, StoreError> {
        records::prune_certificates(self, before).await
    }

    async fn apply_config(&self, changes: Vec<ConfigChange>) -> Result<u64, StoreError> {
        config_log::apply(self, changes).await
    }

    async fn load_config(&self) -> Result<ConfigLog, StoreError> {
        config_log::load(self).await
    }

    async fn compact_config(&self, through: u64) -> Result<usize, StoreError> {
        config_log::compact(self, through).await
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn as_etcd(&self) -> Option<&EtcdStore> {
        Some(self)
    }

    async fn load_config_at(&self) -> Result<(ConfigLog, u64), StoreError> {
        config_log::load_at(self).await
    }

    async fn watch_config(&self, after: u64) -> Result<Option<Box<dyn ConfigWatch>>, StoreError> {
        let watch = watch::open(self, self.watch_client.clone(), after).await?;
        Ok(Some(Box::new(watch)))
    }
}
