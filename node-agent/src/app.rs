//! Starting the agent: authenticate the control plane with the configured bundle, take the node
//! identity over from the running agent or join with the token, then keep the node identity
//! (and every workload identity asked for) renewed.
//!
//! The node key exists only in the agent's memory (the process is not dumpable). It moves to a
//! successor over the handover socket; after a plain stop or a crash the next agent joins again.

mod pods;
mod run;

pub use pods::{Serving, serve as serve_pods};
pub use run::run;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use ferrule_identity::tls::CertSlot;
use ferrule_identity::{SharedBundle, SpiffeId, TrustBundle};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::Config;
use crate::control::{self, ControlPlaneAuthority, JoinCredential, JoinError};
use crate::identity::{IdentityManager, RenewalPolicy, WorkloadCert};
use crate::lifecycle::handover::NodeIdentityPem;
use crate::lifecycle::{AgentRole, Lifecycle, LifecycleMetrics, Listeners};
use crate::mesh_config::MeshConfig;
use crate::telemetry::{AccessLog, PlaintextCollector, PlaintextCounts, Telemetry};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("trust bundle {path}: {reason}")]
    Bundle { path: String, reason: String },
    #[error(
        "no running agent handed over its node identity, so a join token is required \
         (--join-token or FERRULE_JOIN_TOKEN): the node key lives only in agent memory; start \
         the new agent before stopping the old one to keep it"
    )]
    NoJoinToken,
    #[error("ServiceAccount token {path}: {reason}")]
    ServiceAccountToken { path: String, reason: String },
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("the join token is for {got}, but this agent is configured as node {expected:?}")]
    WrongNode { expected: String, got: SpiffeId },
    #[error("loading the eBPF capture: {0}")]
    Capture(String),
    #[error("access log {path}: {reason}")]
    AccessLog { path: String, reason: String },
    #[error("metrics listener {addr}: {reason}")]
    Metrics { addr: String, reason: String },
    #[error("Kubernetes mode: {0}")]
    Kubernetes(String),
    #[error("enrollment socket {path}: {reason}")]
    EnrollSocket { path: String, reason: String },
    #[error(
        "could not take over {failed} of the running agent's {total} pods (first: {first}); \
         it keeps serving them"
    )]
    TakeOver {
        failed: usize,
        total: usize,
        first: String,
    },
}

/// A joined agent.
pub struct Agent {
    pub node_id: SpiffeId,
    pub identities: IdentityManager,
    /// mTLS channel to the control plane with the node identity.
    pub channel: tonic::transport::Channel,
    /// The mesh configuration (directory, policies, revocations), kept current from the
    /// control plane.
    pub mesh: MeshConfig,
    /// The bundle every handshake of this agent verifies against; the watch keeps its roots
    /// and revocations current.
    pub bundle: SharedBundle,
    pub telemetry: Arc<Telemetry>,
    /// Where `ferrule_plaintext_accepted_total` reads from, once capture is loaded.
    pub plaintext_counts: Arc<OnceLock<PlaintextCounts>>,
    /// The bound `/metrics` address, if enabled.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Listeners to hand over, drain state, versions.
    pub lifecycle: Lifecycle,
    pub lifecycle_metrics: LifecycleMetrics,
    /// The current node certificate and key, to hand to a successor.
    pub node_cert: watch::Receiver<Option<Arc<WorkloadCert>>>,
}

fn load_bundle(config: &Config) -> Result<TrustBundle, AgentError> {
    let bad = |reason: String| AgentError::Bundle {
        path: config.bundle.display().to_string(),
        reason,
    };
    let pem = std::fs::read(&config.bundle).map_err(|e| bad(e.to_string()))?;
    TrustBundle::from_pem(config.trust_domain.clone(), &pem).map_err(|e| bad(e.to_string()))
}

/// Starts a fresh agent (nothing inherited from a predecessor).
pub async fn start(
    config: &Config,
    join_token: Option<&str>,
    policy: RenewalPolicy,
) -> Result<Agent, AgentError> {
    let lifecycle = Lifecycle::new(
        Listeners::default(),
        config.drain_timeout,
        config.capture.program_version,
    );
    let credentials = Credentials {
        inherited: None,
        join_token,
    };
    start_with(config, credentials, policy, lifecycle).await
}

/// Where the node identity comes from: the running agent's, handed over, or a join.
pub struct Credentials<'a> {
    pub inherited: Option<NodeIdentityPem>,
    pub join_token: Option<&'a str>,
}

/// Starts the agent with `lifecycle`'s listeners (inherited ones are taken by name).
pub async fn start_with(
    config: &Config,
    credentials: Credentials<'_>,
    policy: RenewalPolicy,
    lifecycle: Lifecycle,
) -> Result<Agent, AgentError> {
    let bundle = SharedBundle::new(load_bundle(config)?);
    let (telemetry, plaintext_counts, metrics_addr, lifecycle_metrics) =
        start_telemetry(config, &lifecycle).await?;
    let (node_id, node_cert) = node_identity(config, &bundle, credentials).await?;
    if let Some(expected) = &config.node_name
        && SpiffeId::node(&config.trust_domain, expected).ok().as_ref() != Some(&node_id)
    {
        return Err(AgentError::WrongNode {
            expected: expected.clone(),
            got: node_id,
        });
    }
    let (serial, not_after) = (node_cert.serial.clone(), node_cert.not_after);
    let node_slot = Arc::new(CertSlot::new(node_cert.certified.clone()));
    let channel = control::node_channel(&config.control_plane, &bundle, node_slot.clone());
    let authority = ControlPlaneAuthority::new(channel.clone());
    let identities = IdentityManager::new(
        Arc::new(authority),
        bundle.clone(),
        policy,
        telemetry.clone(),
    );
    let mut updates = identities.adopt(node_cert);
    let record = NodeCertRecord {
        slot: node_slot,
        data_dir: config.data_dir.clone(),
    };
    // Recorded before the announcement, so whoever reads "joined" finds the chain on disk.
    if let Some(cert) = updates.borrow_and_update().clone() {
        record.keep(&cert);
    }
    tracing::info!(
        id = %node_id, %serial,
        expires_in_s = control::seconds_until(not_after),
        "joined the mesh"
    );
    let node_cert = updates.clone();
    tokio::spawn(follow_node_cert(updates, record));
    let mesh = MeshConfig::default();
    mesh.spawn_watch(
        channel.clone(),
        config.trust_domain.clone(),
        bundle.clone(),
        telemetry.clone(),
        lifecycle_metrics.report(),
    );
    tokio::spawn(renew_revoked_certificates(mesh.clone(), identities.clone()));
    Ok(Agent {
        node_id,
        identities,
        channel,
        mesh,
        bundle,
        telemetry,
        plaintext_counts,
        metrics_addr,
        lifecycle,
        lifecycle_metrics,
        node_cert,
    })
}

type TelemetryParts = (
    Arc<Telemetry>,
    Arc<OnceLock<PlaintextCounts>>,
    Option<std::net::SocketAddr>,
    LifecycleMetrics,
);

/// Metrics registry, access log and the `/metrics` listener (serving until the agent drains).
async fn start_telemetry(
    config: &Config,
    lifecycle: &Lifecycle,
) -> Result<TelemetryParts, AgentError> {
    let access_log = AccessLog::open(&config.access_log).map_err(|e| AgentError::AccessLog {
        path: config.access_log.clone(),
        reason: e.to_string(),
    })?;
    let mut registry = Registry::default();
    let telemetry = Arc::new(Telemetry::new(&mut registry, access_log));
    let plaintext = Arc::new(OnceLock::new());
    registry.register_collector(Box::new(PlaintextCollector(plaintext.clone())));
    let lifecycle_metrics = LifecycleMetrics::register(&mut registry);
    lifecycle_metrics.set(&lifecycle.version, AgentRole::Serving);
    let Some(addr) = config.metrics_listen else {
        return Ok((telemetry, plaintext, None, lifecycle_metrics));
    };
    let listener =
        lifecycle
            .listeners
            .node_tcp("metrics", addr)
            .map_err(|e| AgentError::Metrics {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
    let bound = listener.local_addr().ok();
    tracing::info!(addr = ?bound, "metrics listening on /metrics");
    let serve = ferrule_config::metrics::serve(listener, Arc::new(registry), lifecycle.draining());
    tokio::spawn(serve);
    Ok((telemetry, plaintext, bound, lifecycle_metrics))
}

/// A workload certificate whose serial is revoked is replaced at once (the identity itself may
/// still obtain certificates unless it is revoked too).
async fn renew_revoked_certificates(mesh: MeshConfig, identities: IdentityManager) {
    let mut versions = mesh.subscribe();
    while versions.changed().await.is_ok() {
        let revoked = versions.borrow_and_update().revocations().clone();
        identities.renew_revoked(&revoked);
    }
}

/// The node identity the running agent handed over, when it verifies against our bundle;
/// otherwise a join with the Kubernetes ServiceAccount token or the join token.
async fn node_identity(
    config: &Config,
    bundle: &SharedBundle,
    credentials: Credentials<'_>,
) -> Result<(SpiffeId, WorkloadCert), AgentError> {
    if let Some(pem) = credentials.inherited {
        match inherited_identity(bundle, &pem) {
            Ok(cert) => {
                tracing::info!(id = %cert.id, serial = %cert.serial, "node identity handed over by the previous agent");
                return Ok((cert.id.clone(), cert));
            }
            Err(reason) => {
                tracing::warn!(%reason, "ignoring the node identity handed over; joining")
            }
        }
    }
    let sa_token;
    let credential = match (&config.kubernetes, credentials.join_token) {
        (Some(k8s), _) => {
            sa_token = read_service_account_token(&k8s.token_path)?;
            JoinCredential::ServiceAccountToken(&sa_token)
        }
        (None, Some(token)) => JoinCredential::Token(token),
        (None, None) => return Err(AgentError::NoJoinToken),
    };
    let (id, cert) = control::join(&config.control_plane, bundle, credential).await?;
    Ok((id, cert))
}

/// The handed-over identity, if it parses, is still valid and chains to our bundle.
fn inherited_identity(
    bundle: &SharedBundle,
    pem: &NodeIdentityPem,
) -> Result<WorkloadCert, String> {
    let cert = WorkloadCert::from_pem(pem.0.as_bytes()).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now();
    bundle
        .get()
        .verify(&cert.certified.cert, now, ferrule_identity::Usage::Client)
        .map_err(|e| format!("does not verify against the bundle: {e}"))?;
    Ok(cert)
}

/// The projected token the kubelet keeps fresh; read at each join, never stored.
fn read_service_account_token(path: &Path) -> Result<String, AgentError> {
    let token = std::fs::read_to_string(path).map_err(|e| AgentError::ServiceAccountToken {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(AgentError::ServiceAccountToken {
            path: path.display().to_string(),
            reason: "empty".into(),
        });
    }
    Ok(token.to_owned())
}

/// Where the agent keeps its node certificate: the control-plane channel's client
/// certificate and the public chain on disk (the key stays in memory).
struct NodeCertRecord {
    slot: Arc<CertSlot>,
    data_dir: Option<std::path::PathBuf>,
}

impl NodeCertRecord {
    fn keep(&self, cert: &WorkloadCert) {
        self.slot.set(cert.certified.clone());
        if let Some(dir) = &self.data_dir {
            write_public_chain(dir, cert);
        }
    }
}

/// Records each renewed node certificate.
async fn follow_node_cert(
    mut updates: watch::Receiver<Option<Arc<WorkloadCert>>>,
    record: NodeCertRecord,
) {
    while updates.changed().await.is_ok() {
        if let Some(cert) = updates.borrow_and_update().clone() {
            record.keep(&cert);
        }
    }
}

/// Certificates only: the key never leaves memory.
fn write_public_chain(dir: &Path, cert: &WorkloadCert) {
    let pem = ferrule_identity::pem_encode_certs(&cert.certified.cert);
    let path = dir.join("node-cert.pem");
    let result = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|()| ferrule_identity::ca::replace_file(&path, &pem).map_err(|e| e.to_string()));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not write the node certificate");
    }
}
