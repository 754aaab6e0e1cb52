//! The embedded backend: one redb file owned by one control-plane process.
//!
//! redb is synchronous and a durable commit costs an fsync (milliseconds), while the CA records
//! thousands of certificates a second. So every mutation goes to one writer thread that does
//! group commit: it takes everything queued, applies it in one write transaction, commits once and
//! only then answers each caller. Serialising the writers this way also makes `consume_token`
//! atomic for free. Reads run on the blocking pool against redb's MVCC snapshots and never wait
//! for the writer.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};

use redb::{
    Builder, Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable,
    StorageError, Table, TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

mod commands;
mod config;

use commands::{
    ConsumeToken, CreateToken, DeleteNode, PruneCertificates, PruneTokens, PutNode,
    RecordCertificate,
};
use config::{ApplyConfig, CompactConfig};

use super::config::{ConfigChange, ConfigLog};
use super::{
    BoxError, CertificateRecord, JoinToken, NodeRecord, OpenProblem, Store, StoreError, TokenError,
    UnixSeconds, check_token,
};

/// Values are JSON so that a record can gain fields without a migration.
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const CERTIFICATES: TableDefinition<&str, &[u8]> = TableDefinition::new("certificates");
/// Mesh configuration resources keyed by (kind, key); see `store::config`.
const CONFIG: TableDefinition<(u8, &str), &[u8]> = TableDefinition::new("config");
/// The configuration's epoch, version and compaction mark.
const CONFIG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("config_meta");
/// (not_after, serial): pruning is a range scan of what expired rather than a scan of the whole
/// ledger, which matters because pruning runs on the writer thread and holds up issuance.
const BY_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("certificates_by_expiry");

/// redb's default page cache is 1 GiB; the working set here is small and recent.
const CACHE_BYTES: usize = 64 << 20;
/// Writes queued beyond this make callers wait (backpressure) instead of growing memory.
const QUEUE_DEPTH: usize = 8192;
/// Bounds one transaction so a burst is committed in steps rather than one huge write.
const MAX_GROUP: usize = 2048;

/// The embedded store. Dropping it finishes the queued writes, then closes the file.
pub struct EmbeddedStore {
    path: PathBuf,
    db: Arc<Database>,
    writer: Writer,
}

impl EmbeddedStore {
    /// Opens or creates the store at `path`, creating its parent directory. The file is checked
    /// whole on open (proportional to its size, which pruning bounds) so that a damaged file is a
    /// clear error rather than a panic later. Blocks: call it at startup or on a blocking thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Arc::new(open_database(path)?);
        create_tables(&db).map_err(|(problem, source)| open_error(path, problem, source))?;
        let writer =
            Writer::spawn(db.clone()).map_err(|e| open_error(path, OpenProblem::Io, e.into()))?;
        Ok(Self {
            path: path.to_owned(),
            db,
            writer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write transactions committed so far; with group commit, far fewer than writes.
    pub fn commits(&self) -> u64 {
        self.writer.commits.load(Ordering::Relaxed)
    }

    /// Runs `read` on the blocking pool against a consistent snapshot.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        let task = tokio::task::spawn_blocking(move || {
            let txn = db
                .begin_read()
                .map_err(backend("begin a read transaction"))?;
            read(&txn)
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => Err(StoreError::Closed),
        }
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn create_token(&self, token: JoinToken) -> Result<(), StoreError> {
        self.writer.submit(CreateToken(token)).await?
    }

    async fn consume_token(
        &self,
        id: &str,
        secret_sha256: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<JoinToken, TokenError> {
        let consume = ConsumeToken {
            id: id.to_owned(),
            secret_sha256: *secret_sha256,
            now,
        };
        self.writer.submit(consume).await?
    }

    async fn verify_token(
        &self,
        id: &str,
        secret_sha256: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<(), TokenError> {
        let (id, secret_sha256) = (id.to_owned(), *secret_sha256);
        self.read(move |txn| {
            let tokens = txn
                .open_table(TOKENS)
                .map_err(backend("open the tokens table"))?;
            let Some(value) = tokens.get(id.as_str()).map_err(backend("read a token"))? else {
                return Ok(Err(TokenError::Unknown));
            };
            let stored: commands::StoredToken = decode("token", &id, value.value())?;
            let used = stored.used_at.is_some();
            Ok(check_token(&stored.token, used, &secret_sha256, now))
        })
        .await?
    }

    async fn prune_tokens(&self, now: UnixSeconds) -> Result<usize, StoreError> {
        self.writer.submit(PruneTokens { now }).await
    }

    async fn put_node(&self, node: NodeRecord) -> Result<(), StoreError> {
        let value = encode(&node)?;
        let put = PutNode {
            name: node.name,
            value,
        };
        self.writer.submit(put).await
    }

    async fn delete_node(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.writer.submit(DeleteNode { name }).await
    }

    async fn get_node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |txn| {
            let nodes = txn
                .open_table(NODES)
                .map_err(backend("open the nodes table"))?;
            let value = nodes.get(name.as_str()).map_err(backend("read a node"))?;
            value.map(|v| decode("node", &name, v.value())).transpose()
        })
        .await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read(|txn| {
            let nodes = txn
                .open_table(NODES)
                .map_err(backend("open the nodes table"))?;
            let entries = nodes.iter().map_err(backend("list nodes"))?;
            entries
                .map(|entry| {
                    let (name, value) = entry.map_err(backend("list nodes"))?;
                    decode("node", name.value(), value.value())
                })
                .collect()
        })
        .await
    }

    async fn record_certificate(&self, record: CertificateRecord) -> Result<(), StoreError> {
        // Encoded here, on the caller's task, to keep the single writer thread's work minimal.
        let value = encode(&record)?;
        let record = RecordCertificate {
            serial: record.serial,
            not_after: record.not_after,
            value,
        };
        self.writer.submit(record).await
    }

    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let serial = serial.to_owned();
        self.read(move |txn| {
            let certificates = txn
                .open_table(CERTIFICATES)
                .map_err(backend("open the certificates table"))?;
            let value = certificates
                .get(serial.as_str())
                .map_err(backend("read a certificate"))?;
            value
                .map(|v| decode("certificate", &serial, v.value()))
                .transpose()
        })
        .await
    }

    async fn list_certificates(
        &self,
        node: Option<&str>,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let node = node.map(str::to_owned);
        self.read(move |txn| list_certificates(txn, node.as_deref()))
            .await
    }

    async fn prune_certificates(&self, before: UnixSeconds) -> Result<usize, StoreError> {
        self.writer.submit(PruneCertificates { before }).await
    }

    async fn apply_config(&self, changes: Vec<ConfigChange>) -> Result<u64, StoreError> {
        self.writer.submit(ApplyConfig(changes)).await
    }

    async fn load_config(&self) -> Result<ConfigLog, StoreError> {
        self.read(config::load).await
    }

    async fn compact_config(&self, through: u64) -> Result<usize, StoreError> {
        self.writer.submit(CompactConfig { through }).await
    }
}

fn open_database(path: &Path) -> Result<Database, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| open_error(path, OpenProblem::ParentDirectory, e.into()))?;
    }
    Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .create(path)
        .map_err(|e| open_error(path, classify_open(&e), e.into()))
}

fn classify_open(e: &DatabaseError) -> OpenProblem {
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            OpenProblem::Locked
        }
        DatabaseError::UpgradeRequired(_) => OpenProblem::Incompatible,
        DatabaseError::RepairAborted | DatabaseError::Storage(StorageError::Corrupted(_)) => {
            OpenProblem::Corrupt
        }
        DatabaseError::Storage(StorageError::Io(io)) => match io.kind() {
            io::ErrorKind::IsADirectory => OpenProblem::IsDirectory,
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => OpenProblem::Corrupt,
            _ => OpenProblem::Io,
        },
        _ => OpenProblem::Io,
    }
}

/// Creates missing tables up front, so that reads never meet a missing table and a file holding
/// same-named tables of other types is refused at open.
fn create_tables(db: &Database) -> Result<(), (OpenProblem, BoxError)> {
    let io = |e: redb::Error| (OpenProblem::Io, BoxError::from(e));
    let txn = db.begin_write().map_err(|e| io(e.into()))?;
    let opened = txn
        .open_table(TOKENS)
        .and_then(|_| txn.open_table(NODES))
        .and_then(|_| txn.open_table(CERTIFICATES))
        .and_then(|_| txn.open_table(BY_EXPIRY))
        .and_then(|_| txn.open_table(CONFIG).map(|_| ()));
    opened.map_err(|e| (OpenProblem::Incompatible, e.into()))?;
    {
        let mut meta = txn
            .open_table(CONFIG_META)
            .map_err(|e| (OpenProblem::Incompatible, e.into()))?;
        let has_epoch = meta
            .get(config::META_EPOCH)
            .map_err(|e| io(e.into()))?
            .is_some();
        if !has_epoch {
            let epoch = hex::encode(rand::random::<[u8; 8]>());
            meta.insert(config::META_EPOCH, epoch.as_bytes())
                .map_err(|e| io(e.into()))?;
        }
    }
    txn.commit().map_err(|e| io(e.into()))
}

fn open_error(path: &Path, problem: OpenProblem, source: BoxError) -> StoreError {
    StoreError::Open {
        path: path.to_owned(),
        problem,
        source,
    }
}

/// Wraps a redb error with what the store was doing.
fn backend<E>(action: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError::Backend {
        action,
        source: Box::new(e),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(backend("encode a record"))
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        key: key.to_owned(),
        source: e.into(),
    })
}

fn list_certificates(
    txn: &ReadTransaction,
    node: Option<&str>,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let by_expiry = txn
        .open_table(BY_EXPIRY)
        .map_err(backend("open the certificate expiry index"))?;
    let certificates = txn
        .open_table(CERTIFICATES)
        .map_err(backend("open the certificates table"))?;
    let mut listed = Vec::new();
    // The index is ordered by (not_after, serial), which is the order callers get.
    for entry in by_expiry.iter().map_err(backend("list certificates"))? {
        let (key, _) = entry.map_err(backend("list certificates"))?;
        let (_, serial) = key.value();
        let value = certificates
            .get(serial)
            .map_err(backend("read a certificate"))?
            .ok_or_else(|| StoreError::Corrupt {
                table: "certificate",
                key: serial.to_owned(),
                source: "listed in the expiry index but missing".into(),
            })?;
        let record: CertificateRecord = decode("certificate", serial, value.value())?;
        if node.is_none_or(|n| n == record.node) {
            listed.push(record);
        }
    }
    Ok(listed)
}

// ---- the writer thread ----

/// The queue to the writer thread and its handle. Dropping it closes the queue; the thread
/// drains and commits what is left, then exits, and the drop waits for that so the file is
/// closed (and unlocked) when the store is gone.
struct Writer {
    queue: Option<mpsc::Sender<Box<dyn Pending>>>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    fn spawn(db: Arc<Database>) -> io::Result<Self> {
        let (queue, pending) = mpsc::channel(QUEUE_DEPTH);
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        let thread = thread::Builder::new()
            .name("ferrule-store-writer".into())
            .spawn(move || run_writer(&db, pending, &counter))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            commits,
        })
    }

    /// Queues `command` and waits until it is committed durably (or failed).
    async fn submit<C: Command>(&self, command: C) -> Result<C::Output, StoreError> {
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        let (reply, done) = oneshot::channel();
        let job = Box::new(Job {
            command,
            output: None,
            reply,
        });
        queue.send(job).await.map_err(|_| StoreError::Closed)?;
        // A dropped reply means the writer thread died before answering.
        done.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        // Blocks for at most the queued writes' commit; the thread never waits on the runtime.
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

fn run_writer(db: &Database, mut queue: mpsc::Receiver<Box<dyn Pending>>, commits: &AtomicU64) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // Waits for the first write, then takes whatever else is queued. Returns 0 only once every
    // sender is gone and the queue is empty: the shutdown signal.
    while queue.blocking_recv_many(&mut group, MAX_GROUP) > 0 {
        commit_group(db, &mut group, commits);
    }
}

/// Commits the group in one transaction. If that fails, the transaction was rolled back as a
/// whole, so each write is retried alone: one bad write must not fail its neighbours.
fn commit_group(db: &Database, group: &mut Vec<Box<dyn Pending>>, commits: &AtomicU64) {
    if group.len() > 1 {
        match apply_and_commit(db, group) {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                group.drain(..).for_each(|job| job.finish(Ok(())));
                return;
            }
            Err(e) => {
                let writes = group.len();
                tracing::warn!(error = %e, writes, "group commit failed; retrying writes alone");
            }
        }
    }
    for mut job in group.drain(..) {
        let result = apply_and_commit(db, std::slice::from_mut(&mut job));
        if result.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        job.finish(result);
    }
}

fn apply_and_commit(db: &Database, jobs: &mut [Box<dyn Pending>]) -> Result<(), StoreError> {
    let txn = db
        .begin_write()
        .map_err(backend("begin a write transaction"))?;
    {
        let mut tables = Tables::open(&txn)?;
        for job in jobs.iter_mut() {
            job.apply(&mut tables)?;
        }
    }
    // Dropping `txn` on an earlier error rolls it back. The default durability is Immediate:
    // commit returns after fsync.
    txn.commit().map_err(backend("commit a write transaction"))
}

/// All tables, opened once per transaction rather than once per write.
struct Tables<'txn> {
    tokens: Table<'txn, &'static str, &'static [u8]>,
    nodes: Table<'txn, &'static str, &'static [u8]>,
    certificates: Table<'txn, &'static str, &'static [u8]>,
    by_expiry: Table<'txn, (u64, &'static str), ()>,
    config: Table<'txn, (u8, &'static str), &'static [u8]>,
    config_meta: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            tokens: txn.open_table(TOKENS).map_err(backend("open a table"))?,
            nodes: txn.open_table(NODES).map_err(backend("open a table"))?,
            certificates: txn
                .open_table(CERTIFICATES)
                .map_err(backend("open a table"))?,
            by_expiry: txn.open_table(BY_EXPIRY).map_err(backend("open a table"))?,
            config: txn.open_table(CONFIG).map_err(backend("open a table"))?,
            config_meta: txn
                .open_table(CONFIG_META)
                .map_err(backend("open a table"))?,
        })
    }
}

/// A mutation run on the writer thread. `Err` aborts the whole transaction (storage failures);
/// refusals the caller should see, such as a used token, belong in `Output`.
trait Command: Send + 'static {
    type Output: Send + 'static;
    fn apply(&self, tables: &mut Tables<'_>) -> Result<Self::Output, StoreError>;
}

/// A queued command with the caller's reply channel; the output is held until the commit.
struct Job<C: Command> {
    command: C,
    output: Option<C::Output>,
    reply: oneshot::Sender<Result<C::Output, StoreError>>,
}

/// Object-safe view of a [`Job`], so one queue carries every kind of command.
trait Pending: Send {
    /// May run more than once (the group failed, then alone); each run replaces the output.
    fn apply(&mut self, tables: &mut Tables<'_>) -> Result<(), StoreError>;
    /// Answers the caller with the output if the transaction committed.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

impl<C: Command> Pending for Job<C> {
    fn apply(&mut self, tables: &mut Tables<'_>) -> Result<(), StoreError> {
        self.output = Some(self.command.apply(tables)?);
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        // `output` is always set once the commit succeeded; Closed covers the impossible case.
        let Job { output, reply, .. } = *self;
        let result = committed.and_then(|()| output.ok_or(StoreError::Closed));
        // The caller may have given up (its future was dropped); the write stands regardless.
        let _ = reply.send(result);
    }
}
