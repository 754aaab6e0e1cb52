//! Connecting to the control plane as an administrator, and turning connection failures into
//! messages that say what went wrong and which flag to look at.

mod explain;
mod probe;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, anyhow, bail};
use ferrule_identity::ca::read_cert_pem;
use ferrule_identity::tls::{self, CertSlot, ExpectedServer, SpiffeServerVerifier};
use ferrule_identity::{CertInfo, IdKind, SharedBundle, SpiffeId, TrustBundle, TrustDomain, Usage};
use ferrule_proto::v1::admin_client::AdminClient;
use tonic::transport::Channel;

pub use explain::Explanation;

const DEFAULT_CONTROL_PLANE: &str = "127.0.0.1:8443";

/// How to reach and authenticate to the control plane; shared by every remote command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Control plane gRPC address, HOST:PORT; or several replicas, HOST:PORT,HOST:PORT (calls
    /// fail over to the next one that answers).
    #[arg(
        long = "control-plane",
        value_name = "ADDR",
        env = "FERRULE_CONTROL_PLANE",
        default_value = DEFAULT_CONTROL_PLANE
    )]
    control_plane: String,
    /// Directory with admin.crt, admin.key and bundle.pem (as written by `ferrule ca init`).
    #[arg(long, value_name = "DIR", env = "FERRULE_CA_DIR")]
    ca_dir: Option<PathBuf>,
    /// Admin certificate chain (PEM) [default: <ca-dir>/admin.crt].
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Admin private key (PEM) [default: <ca-dir>/admin.key].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Trust bundle the control plane's certificate must chain to [default: <ca-dir>/bundle.pem].
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
}

/// The admin identity files, each from its flag or from --ca-dir.
struct AdminFiles {
    cert: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
}

impl ConnectArgs {
    /// The control plane address as the user gave it.
    pub fn address(&self) -> &str {
        &self.control_plane
    }

    /// Whether any admin identity file was given (--ca-dir, --cert, --key or --bundle).
    pub fn has_identity(&self) -> bool {
        self.ca_dir.is_some() || self.cert.is_some() || self.key.is_some() || self.bundle.is_some()
    }

    pub fn ca_dir(&self) -> Option<&Path> {
        self.ca_dir.as_deref()
    }

    /// The trust bundle: --bundle, or bundle.pem in --ca-dir.
    pub fn bundle_path(&self) -> Option<PathBuf> {
        self.in_ca_dir(&self.bundle, "bundle.pem")
    }

    /// The admin certificate chain: --cert, or admin.crt in --ca-dir.
    pub fn cert_path(&self) -> Option<PathBuf> {
        self.in_ca_dir(&self.cert, "admin.crt")
    }

    fn in_ca_dir(&self, explicit: &Option<PathBuf>, file: &str) -> Option<PathBuf> {
        explicit
            .clone()
            .or_else(|| self.ca_dir.as_ref().map(|dir| dir.join(file)))
    }

    fn files(&self) -> anyhow::Result<AdminFiles> {
        let pick = |explicit: &Option<PathBuf>, file: &str, flag: &str| {
            self.in_ca_dir(explicit, file).ok_or_else(|| {
                anyhow!(
                    "no {file} to authenticate with: pass --ca-dir DIR (or set \
                         FERRULE_CA_DIR) for the directory `ferrule ca init` wrote, or {flag} FILE"
                )
            })
        };
        Ok(AdminFiles {
            cert: pick(&self.cert, "admin.crt", "--cert")?,
            key: pick(&self.key, "admin.key", "--key")?,
            bundle: pick(&self.bundle, "bundle.pem", "--bundle")?,
        })
    }
}

/// A lazily connecting Admin client; failures surface on the first call.
pub struct ControlPlane {
    admin: AdminClient<Channel>,
    /// As the user wrote it, for messages.
    addr: String,
    socket: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    trust_domain: TrustDomain,
}

impl ControlPlane {
    pub async fn connect(args: &ConnectArgs) -> anyhow::Result<Self> {
        let files = args.files()?;
        let identity = AdminIdentity::load(&files)?;
        let sockets = resolve_replicas(&args.control_plane).await?;
        let socket = sockets[0];
        let verifier = SpiffeServerVerifier::new(
            identity.bundle,
            ExpectedServer::Exact(SpiffeId::control_plane(&identity.trust_domain)),
        );
        let tls = Arc::new(tls::client_config(
            Some(Arc::new(identity.certs)),
            verifier,
            &[b"h2"],
        ));
        let replicas: Vec<String> = sockets.iter().map(SocketAddr::to_string).collect();
        let channel = ferrule_proto::channel::lazy(replicas.join(","), tls.clone());
        Ok(Self {
            admin: AdminClient::new(channel),
            addr: args.control_plane.clone(),
            socket,
            tls,
            trust_domain: identity.trust_domain,
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Makes one Admin call; a failure comes back explained (unreachable, TLS failure with its
    /// reason, or the control plane's refusal).
    pub async fn call<T, F, Fut>(&self, call: F) -> anyhow::Result<T>
    where
        F: FnOnce(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match call(self.admin.clone()).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.explain(status).await),
        }
    }

    async fn explain(&self, status: tonic::Status) -> anyhow::Error {
        // Only statuses tonic built from a transport failure have a source.
        let Some(source) = std::error::Error::source(&status) else {
            return explain::refusal(&self.addr, &status);
        };
        let mut diagnosis = explain::Diagnosis::from_chain(source);
        if diagnosis.is_unclear()
            && let Some(better) = probe::diagnose(self.socket, self.tls.clone()).await
        {
            diagnosis = better;
        }
        diagnosis.explain(&self.addr, &self.trust_domain)
    }
}

/// The admin certificate, its key and the bundle, checked before any connection is made: the
/// control plane can only answer a bad client certificate with a bare TLS alert, so problems we
/// can see locally get a precise message here instead.
struct AdminIdentity {
    trust_domain: TrustDomain,
    bundle: SharedBundle,
    certs: CertSlot,
}

impl AdminIdentity {
    fn load(files: &AdminFiles) -> anyhow::Result<Self> {
        let chain = read_cert_pem(&files.cert).context("reading the admin certificate (--cert)")?;
        let id = admin_id(&chain[0], &files.cert)?;
        let trust_domain = id.trust_domain();
        let bundle = read_bundle(&files.bundle, &trust_domain)?;
        bundle
            .verify(&chain, SystemTime::now(), Usage::Client)
            .with_context(|| {
                format!(
                    "the admin certificate {} is not valid under the trust bundle {}; issue a \
                     new admin certificate or pass the matching --bundle",
                    files.cert.display(),
                    files.bundle.display()
                )
            })?;
        let certs = CertSlot::from_pem_files(&files.cert, &files.key)
            .context("loading the admin certificate and key (--cert, --key)")?;
        Ok(Self {
            trust_domain,
            bundle: SharedBundle::new(bundle),
            certs,
        })
    }
}

/// The SPIFFE ID of the admin certificate, which must be an admin identity.
pub fn admin_id(leaf: &[u8], path: &Path) -> anyhow::Result<SpiffeId> {
    let id = CertInfo::parse(leaf)
        .and_then(|info| info.spiffe_id())
        .with_context(|| format!("{} is not a usable X.509-SVID", path.display()))?;
    if !matches!(id.kind(), IdKind::Admin(_)) {
        bail!(
            "{} identifies {id}, not an administrator (spiffe://<td>/ferrule/admin/<name>); use \
             the admin.crt written by `ferrule ca init`",
            path.display()
        );
    }
    Ok(id)
}

fn read_bundle(path: &Path, td: &TrustDomain) -> anyhow::Result<TrustBundle> {
    let pem = std::fs::read(path)
        .with_context(|| format!("reading the trust bundle {} (--bundle)", path.display()))?;
    TrustBundle::from_pem(td.clone(), &pem)
        .with_context(|| format!("reading the trust bundle {} (--bundle)", path.display()))
}

/// Resolves HOST:PORT; the first address wins, as `TcpStream::connect` would try it first.
/// Each of the comma-separated control-plane replicas; calls fail over between them.
async fn resolve_replicas(addrs: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let mut sockets = Vec::new();
    for addr in addrs.split(',') {
        sockets.push(resolve(addr.trim()).await?);
    }
    Ok(sockets)
}

async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    let fix = format!("expected HOST:PORT ({})", explain::ADDR_FLAG);
    let mut addrs = tokio::net::lookup_host(addr).await.map_err(|e| {
        Explanation::error(
            format!("cannot resolve the control plane address {addr:?}: {e}"),
            fix.clone(),
        )
    })?;
    addrs.next().ok_or_else(|| {
        Explanation::error(
            format!("the control plane address {addr:?} resolves to no address"),
            fix,
        )
    })
}
