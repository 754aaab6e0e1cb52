//! A stand-in control plane: the real `Admin` gRPC service shape over the mesh's TLS settings,
//! with canned answers. It lets the CLI's TLS setup, requests and output be tested without the
//! control-plane crate (whose end-to-end tests live in the `tests` crate).

#![allow(dead_code)] // Each test file uses a different subset.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrule_identity::ca::{CaLayout, IssuingCa, read_cert_pem};
use ferrule_identity::signer::InMemorySigner;
use ferrule_identity::tls::{self, CertSlot, SpiffeClientVerifier};
use ferrule_identity::{CertInfo, SharedBundle, SpiffeId, TrustBundle, TrustDomain};
use ferrule_proto::v1::{self, admin_server};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What the fake saw, for assertions.
#[derive(Debug, Default)]
pub struct Seen {
    /// SPIFFE ID of each calling client certificate.
    pub callers: Vec<String>,
    pub token_requests: Vec<v1::CreateJoinTokenRequest>,
    pub certificate_filters: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FakeAdmin {
    pub seen: Arc<Mutex<Seen>>,
    /// Added to the real time in `status` answers, to fake a skewed control plane clock.
    pub clock_offset_ms: i64,
}

fn record_caller<T>(seen: &Mutex<Seen>, request: &Request<T>) {
    let id = request
        .extensions()
        .get::<PeerId>()
        .map(|p| p.0.clone())
        .unwrap_or_default();
    seen.lock().unwrap().callers.push(id);
}

#[tonic::async_trait]
impl admin_server::Admin for FakeAdmin {
    async fn create_join_token(
        &self,
        request: Request<v1::CreateJoinTokenRequest>,
    ) -> Result<Response<v1::CreateJoinTokenResponse>, Status> {
        record_caller(&self.seen, &request);
        let body = request.into_inner();
        if body.ttl_seconds > 86_400 {
            return Err(Status::invalid_argument(format!(
                "ttl {}s exceeds the maximum of 86400s",
                body.ttl_seconds
            )));
        }
        let expires_at = now() + body.ttl_seconds as i64;
        self.seen.lock().unwrap().token_requests.push(body);
        Ok(Response::new(v1::CreateJoinTokenResponse {
            token: "fjt_0123456789abcdef".into(),
            expires_at,
        }))
    }

    async fn list_nodes(
        &self,
        request: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        record_caller(&self.seen, &request);
        let node = |name: &str, allow: &[&str], joined_at| v1::NodeInfo {
            name: name.into(),
            spiffe_id: format!("spiffe://example.org/node/{name}"),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            joined_at,
            // n1 owns 10.244.1.0/24, n2 10.244.2.0/24.
            pod_cidrs: vec![format!("10.244.{}.0/24", &name[1..])],
        };
        Ok(Response::new(v1::ListNodesResponse {
            nodes: vec![
                node("n2", &["spiffe://example.org/ns/db/sa/*"], 1_700_000_100),
                node(
                    "n1",
                    &[
                        "spiffe://example.org/ns/shop/sa/*",
                        "spiffe://example.org/ns/web/sa/*",
                    ],
                    1_700_000_000,
                ),
            ],
        }))
    }

    async fn list_certificates(
        &self,
        request: Request<v1::ListCertificatesRequest>,
    ) -> Result<Response<v1::ListCertificatesResponse>, Status> {
        record_caller(&self.seen, &request);
        let filter = request.into_inner().node;
        self.seen
            .lock()
            .unwrap()
            .certificate_filters
            .push(filter.clone());
        let now = now();
        let hours = |h: i64| h * 3600;
        let cert =
            |serial: &str, sa: &str, node: &str, not_before, not_after| v1::CertificateRecord {
                serial: serial.into(),
                spiffe_id: format!("spiffe://example.org/ns/shop/sa/{sa}"),
                node: node.into(),
                not_before,
                not_after,
                revoked: sa == "revoked",
            };
        let all = vec![
            cert("0a", "healthy", "n1", now - hours(1), now + hours(7)),
            cert("0b", "expired", "n2", now - hours(9), now - hours(1)),
            cert("0d", "revoked", "n2", now - hours(1), now + hours(7) + 1),
            cert("0c", "expiring", "n1", now - hours(7), now + hours(1) - 1),
        ];
        let certificates = all
            .into_iter()
            .filter(|c| filter.is_empty() || c.node == filter)
            .collect();
        Ok(Response::new(v1::ListCertificatesResponse { certificates }))
    }

    async fn apply_policies(
        &self,
        _: Request<v1::ApplyPoliciesRequest>,
    ) -> Result<Response<v1::ApplyPoliciesResponse>, Status> {
        Err(Status::unimplemented(
            "not faked: the real control plane is tested end to end",
        ))
    }

    async fn list_policies(
        &self,
        _: Request<v1::ListPoliciesRequest>,
    ) -> Result<Response<v1::ListPoliciesResponse>, Status> {
        Err(Status::unimplemented(
            "not faked: the real control plane is tested end to end",
        ))
    }

    async fn delete_policies(
        &self,
        _: Request<v1::DeletePoliciesRequest>,
    ) -> Result<Response<v1::DeletePoliciesResponse>, Status> {
        Err(Status::unimplemented(
            "not faked: the real control plane is tested end to end",
        ))
    }

    async fn revoke(
        &self,
        _: Request<v1::RevokeRequest>,
    ) -> Result<Response<v1::RevokeResponse>, Status> {
        Err(Status::unimplemented(
            "not faked: the real control plane is tested end to end",
        ))
    }

    async fn list_revocations(
        &self,
        _: Request<v1::ListRevocationsRequest>,
    ) -> Result<Response<v1::ListRevocationsResponse>, Status> {
        Ok(Response::new(v1::ListRevocationsResponse::default()))
    }

    async fn remove_node(
        &self,
        _: Request<v1::RemoveNodeRequest>,
    ) -> Result<Response<v1::RemoveNodeResponse>, Status> {
        Err(Status::unimplemented(
            "not faked: the real control plane is tested end to end",
        ))
    }

    async fn explain(
        &self,
        _: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        Err(Status::unimplemented(
            "not faked: the real control plane is tested end to end",
        ))
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        record_caller(&self.seen, &request);
        let agent = |node: &str, connected| v1::AgentStatus {
            node: node.into(),
            connected,
            applied_version: 7,
            // n1 was just upgraded: its previous agent still drains.
            agent: connected.then(|| v1::AgentInfo {
                version: "0.2.0".into(),
                program_version: 2,
                draining: false,
                predecessor_version: "0.1.0".into(),
                predecessor_program_version: 1,
            }),
            ..Default::default()
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        Ok(Response::new(v1::StatusResponse {
            epoch: "e1".into(),
            version: 7,
            agents: vec![agent("n1", true), agent("n2", false)],
            server_time_ms: now_ms + self.clock_offset_ms,
            store: "embedded".into(),
            ..Default::default()
        }))
    }
}

/// The client's SPIFFE ID, attached to each request by tonic.
#[derive(Debug, Clone)]
pub struct PeerId(pub String);

pub struct Conn(TlsStream<TcpStream>);

impl Connected for Conn {
    type ConnectInfo = PeerId;
    fn connect_info(&self) -> PeerId {
        let id = self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| CertInfo::parse(leaf).ok())
            .and_then(|info| info.spiffe_id().ok())
            .map(|id| id.to_string())
            .unwrap_or_default();
        PeerId(id)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn trust_domain(ca_dir: &Path) -> TrustDomain {
    let admin = read_cert_pem(&CaLayout::new(ca_dir).admin_cert()).unwrap();
    let info = CertInfo::parse(&admin[0]).unwrap();
    info.spiffe_id().unwrap().trust_domain()
}

pub fn bundle_of(ca_dir: &Path) -> TrustBundle {
    let layout = CaLayout::new(ca_dir);
    let pem = std::fs::read(layout.bundle()).unwrap();
    TrustBundle::from_pem(trust_domain(ca_dir), &pem).unwrap()
}

/// A certificate for `id` issued by the CA in `ca_dir` (with the file-backed issuing key).
pub fn issue(ca_dir: &Path, id: &SpiffeId) -> CertSlot {
    let layout = CaLayout::new(ca_dir);
    let signer = InMemorySigner::from_pkcs8_file(&layout.issuing_key()).unwrap();
    let chain = read_cert_pem(&layout.chain()).unwrap();
    let ca = IssuingCa::new(Arc::new(signer), chain, bundle_of(ca_dir)).unwrap();
    let (svid, key) = ca
        .issue_with_new_key(id, Duration::from_secs(3600), &[], &[])
        .unwrap();
    let provider = tls::crypto_provider();
    let certified =
        CertSlot::certified_key(&provider, svid.full_chain(), key.serialize_der()).unwrap();
    CertSlot::new(certified)
}

/// The control plane's own identity, from the CA in `ca_dir`.
pub fn control_plane_cert(ca_dir: &Path) -> CertSlot {
    issue(ca_dir, &SpiffeId::control_plane(&trust_domain(ca_dir)))
}

/// Serves `FakeAdmin` on 127.0.0.1:<random>, presenting `server_cert` and accepting clients
/// whose certificates chain to `client_bundle`.
pub async fn serve(
    server_cert: CertSlot,
    client_bundle: TrustBundle,
    admin: FakeAdmin,
) -> SocketAddr {
    let config = tls::server_config(
        Arc::new(server_cert),
        SpiffeClientVerifier::required(SharedBundle::new(client_bundle)),
        &[b"h2"],
    );
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Conn>>(16);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                // A refused handshake is the expected outcome of some tests; just drop it.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok(Conn(tls))).await;
                }
            });
        }
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(admin_server::AdminServer::new(admin))
            .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx)),
    );
    addr
}
