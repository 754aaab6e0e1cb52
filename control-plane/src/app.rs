//! Builds a running control plane from its configuration: CA, store, serving identity and the
//! gRPC server on an already-bound listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrule_identity::ca::{CaError, IssuingCa, read_cert_pem};
use ferrule_identity::signer::{InMemorySigner, Signer};
use ferrule_identity::tls::{self, CertSlot, SpiffeClientVerifier};
use ferrule_identity::{SharedBundle, SpiffeId, TrustBundle};
use ferrule_proto::v1::{
    admin_server::AdminServer, identity_server::IdentityServer, node_server::NodeServer,
    workloads_server::WorkloadsServer,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, SignerConfig};
use crate::directory::Directory;
use crate::service::{AdminService, IdentityService, NodeService, WorkloadsService};
use crate::state::ControlPlane;
use crate::store::{EmbeddedStore, Store, StoreError};
use crate::tls_incoming;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("loading the issuing CA: {0}")]
    Ca(#[from] CaError),
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving certificate: {0}")]
    ServingCert(String),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A started control plane.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub state: Arc<ControlPlane>,
    pub server: JoinHandle<Result<(), AppError>>,
}

/// Loads the issuing CA named by the config (its key through the configured signer backend).
pub fn load_ca(config: &Config) -> Result<IssuingCa, CaError> {
    let signer: Arc<dyn Signer> = match &config.ca.signer {
        SignerConfig::File { key } => Arc::new(InMemorySigner::from_pkcs8_file(key)?),
    };
    let bundle = TrustBundle::new(
        config.trust_domain.clone(),
        read_cert_pem(&config.ca.bundle)?,
    )
    .map_err(CaError::Chain)?;
    IssuingCa::new(signer, read_cert_pem(&config.ca.chain)?, bundle)
}

/// Binds `config.listen` and starts serving until `shutdown` completes.
pub async fn build(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, AppError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AppError::Bind {
            addr: config.listen,
            source,
        })?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&config.store_path())?);
    serve(config, listener, store, shutdown).await
}

/// Serves on an already-bound listener with the given store (tests bind port 0).
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, AppError> {
    let grpc_addr = listener.local_addr().map_err(|source| AppError::Bind {
        addr: config.listen,
        source,
    })?;
    let directory = Directory::load(store.as_ref()).await?;
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = closing_tx.send(true);
    };
    let state = Arc::new(ControlPlane {
        trust_domain: config.trust_domain.clone(),
        ca: load_ca(config)?,
        directory,
        closing,
        store,
        certificates: config.certificates.clone(),
        max_join_token_ttl: config.max_join_token_ttl,
    });
    let slot = serving_identity(config, &state.ca)?;
    // Background work ends with the server, so a stopped control plane releases its store.
    let background = [
        spawn_serving_cert_rotation(config.clone(), state.ca.clone(), slot.clone()),
        spawn_store_maintenance(state.store.clone()),
    ];
    let verifier = SpiffeClientVerifier::optional(SharedBundle::new(state.ca.bundle().clone()));
    let tls = Arc::new(tls::server_config(slot, verifier, &[b"h2"]));
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(NodeServer::new(NodeService(state.clone())))
        .add_service(IdentityServer::new(IdentityService(state.clone())))
        .add_service(AdminServer::new(AdminService(state.clone())))
        .add_service(WorkloadsServer::new(WorkloadsService(state.clone())));
    let incoming = tls_incoming::incoming(listener, tls);
    let server = tokio::spawn(async move {
        let served = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        for task in background {
            task.abort();
            let _ = task.await;
        }
        Ok(served?)
    });
    tracing::info!(%grpc_addr, trust_domain = %config.trust_domain, "control plane serving");
    Ok(Running {
        grpc_addr,
        state,
        server,
    })
}

fn issue_serving_cert(
    config: &Config,
    ca: &IssuingCa,
) -> Result<Arc<rustls::sign::CertifiedKey>, AppError> {
    let id = SpiffeId::control_plane(&config.trust_domain);
    let (svid, key) = ca.issue_with_new_key(
        &id,
        config.certificates.server_ttl,
        &config.server_dns_names,
        &config.server_ip_addresses,
    )?;
    CertSlot::certified_key(
        &tls::crypto_provider(),
        svid.full_chain(),
        key.serialize_der(),
    )
    .map_err(|e| AppError::ServingCert(e.to_string()))
}

/// The control plane's own X.509-SVID, with a key that exists only in this process.
fn serving_identity(config: &Config, ca: &IssuingCa) -> Result<Arc<CertSlot>, AppError> {
    Ok(Arc::new(CertSlot::new(issue_serving_cert(config, ca)?)))
}

fn spawn_serving_cert_rotation(
    config: Config,
    ca: IssuingCa,
    slot: Arc<CertSlot>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let half_life = config.certificates.server_ttl / 2;
        loop {
            tokio::time::sleep(half_life).await;
            match issue_serving_cert(&config, &ca) {
                Ok(key) => slot.set(key),
                Err(e) => {
                    tracing::error!(error = %e, "rotating the serving certificate failed");
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            }
        }
    })
}

/// Expired certificates stay listed for a week (for `ferrule certs` and audits), then go; used
/// and expired join tokens are dropped a day after expiry.
fn spawn_store_maintenance(store: Arc<dyn Store>) -> JoinHandle<()> {
    const EVERY: Duration = Duration::from_secs(3600);
    const KEEP_EXPIRED: u64 = 7 * 24 * 3600;
    tokio::spawn(async move {
        loop {
            let now = crate::state::now();
            if let Err(e) = store
                .prune_certificates(now.saturating_sub(KEEP_EXPIRED))
                .await
            {
                tracing::warn!(error = %e, "pruning expired certificate records failed");
            }
            if let Err(e) = store.prune_tokens(now).await {
                tracing::warn!(error = %e, "pruning join tokens failed");
            }
            tokio::time::sleep(EVERY).await;
        }
    })
}
