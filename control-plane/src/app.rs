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
    self as v1, admin_server::AdminServer, config_server::ConfigServer,
    identity_server::IdentityServer, node_server::NodeServer, workloads_server::WorkloadsServer,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tower::layer::util::{Identity, Stack};
use tower::util::MapResponseLayer;

use crate::agents::AgentSessions;
use crate::config::{Config, LimitsConfig, SignerConfig, StoreConfig};
use crate::kubernetes::Kubernetes;
use crate::limits::Listener;
use crate::limits::admission::Admission;
use crate::limits::header_list::{self, HeaderListLimitLayer};
use crate::mesh_config::{Change, MeshConfig};
use crate::metrics::Metrics;
use crate::service::{AdminService, ConfigService, IdentityService, NodeService, WorkloadsService};
use crate::state::ControlPlane;
use crate::store::{EmbeddedStore, EtcdStore, Store, StoreError};
use crate::{auth, tls_incoming};
use crate::{public, published};

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
    #[error("publishing the CRL: {0}")]
    Publish(String),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("Kubernetes mode: {0}")]
    Kubernetes(#[from] crate::kubernetes::Error),
}

/// A started control plane.
pub struct Running {
    pub grpc_addr: SocketAddr,
    /// The public HTTPS endpoint (CRL, bundle), when configured.
    pub public_addr: Option<SocketAddr>,
    /// `/metrics`, when configured.
    pub metrics_addr: Option<SocketAddr>,
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
    let store = open_store(config).await?;
    serve(config, listener, store, shutdown).await
}

/// The embedded store under `data_dir`, or the shared etcd store (`store: {etcd: ...}`).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.store {
        StoreConfig::Embedded => Arc::new(EmbeddedStore::open(&config.store_path())?),
        StoreConfig::Etcd(options) => {
            let store = EtcdStore::connect(options).await?;
            tracing::info!(endpoints = ?options.endpoints, prefix = %options.prefix, "using the etcd store");
            Arc::new(store)
        }
    })
}

/// Serves on an already-bound listener with the given store (tests bind port 0). In Kubernetes
/// mode the API server is found with `kube::Config::infer()`.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, AppError> {
    serve_with(config, listener, store, None, shutdown).await
}

/// Like [`serve`], with the Kubernetes client given (tests point it at an API server double).
/// Only a config with a `kubernetes:` section uses one; it infers it when `kube` is `None`.
pub async fn serve_with(
    config: &Config,
    listener: TcpListener,
    store: Arc<dyn Store>,
    kube: Option<kube::Client>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, AppError> {
    let kubernetes = match (&config.kubernetes, kube) {
        (Some(k8s), Some(client)) => Some(Kubernetes::new(client, k8s.clone())),
        (Some(k8s), None) => Some(Kubernetes::new(
            crate::kubernetes::infer_client().await?,
            k8s.clone(),
        )),
        (None, _) => None,
    };
    let sources = match &kubernetes {
        Some(k8s) => k8s.sources(),
        None => crate::standalone::sources(store.clone()),
    };
    let grpc_addr = listener.local_addr().map_err(|source| AppError::Bind {
        addr: config.listen,
        source,
    })?;
    let ca = load_ca(config)?;
    let mesh_config = MeshConfig::load(store.as_ref()).await?;
    let following = mesh_config.follow(store.clone());
    // Agents learn the bundle (and a rotation adding a root) through their watch.
    mesh_config
        .apply(store.as_ref(), vec![Change::Put(bundle_resource(&ca))])
        .await?;
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = closing_tx.send(true);
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = crate::metrics::Metrics::new(&mut registry);
    let state = Arc::new(ControlPlane {
        metrics: metrics.clone(),
        handshakes: crate::handshakes::HandshakeLog::new(config.limits.handshake_log),
        quotas: crate::limits::Quotas::new(&config.limits),
        connections: Default::default(),
        trust_domain: config.trust_domain.clone(),
        verify_bundle: SharedBundle::new(ca.bundle().clone()),
        ca,
        config: mesh_config,
        agents: Arc::new(AgentSessions::default()),
        closing,
        sources,
        store,
        certificates: config.certificates.clone(),
        max_join_token_ttl: config.max_join_token_ttl,
    });
    let slot = serving_identity(config, &state.ca)?;
    // Background work ends with the server, so a stopped control plane releases its store.
    let mut background: Vec<_> = following.into_iter().collect();
    background.extend([
        spawn_serving_cert_rotation(config.clone(), state.ca.clone(), slot.clone()),
        tokio::spawn(crate::maintenance::run(
            state.clone(),
            grpc_addr.to_string(),
        )),
        tokio::spawn(crate::maintenance::heartbeat(
            state.clone(),
            grpc_addr.to_string(),
        )),
        tokio::spawn(crate::revocations::enforce(Arc::downgrade(&state))),
    ]);
    if let Some(k8s) = &kubernetes {
        background.extend(k8s.start(state.clone()));
    }
    crate::revocations::refresh(&state);
    let public = start_public(config, &state, slot.clone()).await?;
    let verifier = SpiffeClientVerifier::optional(state.verify_bundle.clone());
    let tls = Arc::new(tls::server_config(slot, verifier, &[b"h2"]));
    let unrevoked = auth::refuse_revoked(state.verify_bundle.clone());
    let max_message = config.limits.max_message_size;
    let router = grpc_server(&config.limits, metrics.clone())
        .add_service(InterceptedService::new(
            NodeServer::new(NodeService(state.clone())).max_decoding_message_size(max_message),
            unrevoked.clone(),
        ))
        .add_service(InterceptedService::new(
            IdentityServer::new(IdentityService(state.clone()))
                .max_decoding_message_size(max_message),
            unrevoked.clone(),
        ))
        .add_service(InterceptedService::new(
            AdminServer::new(AdminService(state.clone())).max_decoding_message_size(max_message),
            unrevoked.clone(),
        ))
        .add_service(InterceptedService::new(
            WorkloadsServer::new(WorkloadsService(state.clone()))
                .max_decoding_message_size(max_message),
            unrevoked.clone(),
        ))
        .add_service(InterceptedService::new(
            ConfigServer::new(ConfigService(state.clone())).max_decoding_message_size(max_message),
            unrevoked,
        ));
    registry.register_collector(Box::new(crate::metrics::FleetCollector(Arc::downgrade(
        &state,
    ))));
    registry.register_collector(Box::new(crate::metrics::CrlCollector(
        public.documents.clone(),
    )));
    let metrics_addr = start_metrics(config, &state, registry).await?;
    let policy = tls_incoming::ConnectionPolicy {
        handshake_timeout: config.limits.handshake_timeout,
        keepalive_timeout: config.limits.http2.keepalive_timeout,
        admission: Admission::new(config.limits.connections),
    };
    let incoming =
        tls_incoming::incoming(listener, tls, metrics, state.connections.clone(), policy);
    background.extend(public.tasks);
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
        public_addr: public.addr,
        metrics_addr,
        state,
        server,
    })
}

/// The gRPC server with the HTTP/2 limits of `limits:`; a request refused for its size is counted
/// (tonic answers it with OUT_OF_RANGE before any service sees it).
fn grpc_server(
    limits: &LimitsConfig,
    metrics: Arc<Metrics>,
) -> tonic::transport::Server<
    Stack<HeaderListLimitLayer, Stack<MapResponseLayer<impl CountTooLarge>, Identity>>,
> {
    let http2 = limits.http2;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(http2.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(http2.max_pending_accept_reset_streams))
        .http2_max_local_error_reset_streams(Some(http2.max_local_error_reset_streams))
        .http2_max_header_list_size(header_list::h2_ceiling(http2.max_header_list_size))
        .http2_keepalive_interval(Some(http2.keepalive_interval))
        .http2_keepalive_timeout(Some(http2.keepalive_timeout))
        .layer(MapResponseLayer::new(count_too_large(metrics.clone())))
        .layer(HeaderListLimitLayer::new(
            http2.max_header_list_size,
            metrics,
        ))
}

type GrpcResponse = http::Response<tonic::body::Body>;

trait CountTooLarge: Fn(GrpcResponse) -> GrpcResponse + Clone + Send + Sync + 'static {}
impl<F: Fn(GrpcResponse) -> GrpcResponse + Clone + Send + Sync + 'static> CountTooLarge for F {}

fn count_too_large(metrics: Arc<Metrics>) -> impl CountTooLarge {
    move |response: GrpcResponse| {
        let code = response.headers().get("grpc-status");
        if code.is_some_and(|code| code == "11") {
            metrics.limit_hit(Listener::Grpc, "max_message_size");
        }
        response
    }
}

/// Serves `/metrics` on `metrics_listen` until the control plane closes.
async fn start_metrics(
    config: &Config,
    state: &Arc<ControlPlane>,
    registry: prometheus_client::registry::Registry,
) -> Result<Option<SocketAddr>, AppError> {
    let Some(addr) = config.metrics_listen else {
        return Ok(None);
    };
    let (listener, bound, shutdown) = bind_until_closing(addr, state).await?;
    tokio::spawn(ferrule_config::metrics::serve(
        listener,
        Arc::new(registry),
        shutdown,
    ));
    tracing::info!(addr = ?bound, "metrics listening on /metrics");
    Ok(bound)
}

/// A listener for a side server (metrics, public HTTPS), its bound address, and a future that
/// completes when the control plane starts shutting down.
async fn bind_until_closing(
    addr: SocketAddr,
    state: &ControlPlane,
) -> Result<
    (
        TcpListener,
        Option<SocketAddr>,
        impl Future<Output = ()> + use<>,
    ),
    AppError,
> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    let bound = listener.local_addr().ok();
    let mut closing = state.closing.clone();
    let shutdown = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    Ok((listener, bound, shutdown))
}

struct Public {
    addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    documents: tokio::sync::watch::Receiver<Arc<crate::public::PublicDocuments>>,
}

/// The CRL publisher always runs (it is cheap and keeps signing exercised); the HTTPS listener
/// only when `public_listen` is set.
async fn start_public(
    config: &Config,
    state: &Arc<ControlPlane>,
    slot: Arc<CertSlot>,
) -> Result<Public, AppError> {
    let (documents, publisher) = published::start(state.clone(), config.ca.offline_crls.clone())
        .map_err(|e| AppError::Publish(e.to_string()))?;
    let mut tasks = vec![publisher];
    let Some(addr) = config.public_listen else {
        tracing::info!("public HTTPS (CRL, trust bundle) is off; set public_listen to serve it");
        return Ok(Public {
            addr: None,
            tasks,
            documents,
        });
    };
    let (listener, bound, shutdown) = bind_until_closing(addr, state).await?;
    let tls = public::public_server_config(slot);
    let limits = public::PublicLimits {
        limits: config.limits.clone(),
        metrics: state.metrics.clone(),
    };
    tasks.push(tokio::spawn(public::serve_public(
        listener,
        tls,
        documents.clone(),
        limits,
        shutdown,
    )));
    tracing::info!(addr = ?bound, "public HTTPS serving the CRL and trust bundle");
    Ok(Public {
        addr: bound,
        tasks,
        documents,
    })
}

fn bundle_resource(ca: &IssuingCa) -> v1::Resource {
    let bundle = ca.bundle();
    v1::Resource {
        key: bundle.trust_domain().to_string(),
        kind: Some(v1::resource::Kind::Bundle(v1::TrustBundle {
            trust_domain: bundle.trust_domain().to_string(),
            roots: bundle.roots().iter().map(|r| r.to_vec()).collect(),
        })),
    }
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
