//! The agent's client of the control plane: join with a token, then mutual TLS with the node
//! identity for every later call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrule_identity::tls::{self, CertSlot, ExpectedServer, SpiffeServerVerifier};
use ferrule_identity::{SharedBundle, SpiffeId};
use ferrule_proto::v1::{self, identity_client::IdentityClient, node_client::NodeClient};
use rustls_pki_types::CertificateDer;
use tonic::transport::Channel;

use crate::identity::{CertificateAuthority, SignError, SignedSvid, WorkloadCert};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the control plane refused the join token: {0}")]
    Refused(String),
    #[error("cannot reach the control plane at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("join response unusable: {0}")]
    BadResponse(String),
}

fn tls_config(bundle: &SharedBundle, node: Option<Arc<CertSlot>>) -> Arc<rustls::ClientConfig> {
    let expected = ExpectedServer::Exact(SpiffeId::control_plane(bundle.get().trust_domain()));
    let verifier = SpiffeServerVerifier::new(bundle.clone(), expected);
    Arc::new(tls::client_config(node, verifier, &[b"h2"]))
}

/// Exchanges `token` for the node certificate. The control plane is authenticated by `bundle`.
pub async fn join(
    addr: SocketAddr,
    bundle: &SharedBundle,
    token: &str,
) -> Result<(SpiffeId, WorkloadCert), JoinError> {
    let channel = ferrule_proto::channel::lazy(addr, tls_config(bundle, None));
    // The node ID is decided by the control plane from the token; the CSR's SAN is informative.
    let placeholder = SpiffeId::node(bundle.get().trust_domain(), "joining").expect("valid ID");
    let (key, csr) = crate::identity::new_key_and_csr(&placeholder)
        .map_err(|e| JoinError::BadResponse(e.to_string()))?;
    let request = v1::JoinRequest {
        token: token.to_owned(),
        csr,
        ..Default::default()
    };
    let response = NodeClient::new(channel)
        .join(request)
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::InvalidArgument => {
                JoinError::Refused(status.message().to_owned())
            }
            _ => JoinError::Unreachable {
                addr,
                reason: status_reason(&status),
            },
        })?
        .into_inner();
    let id = SpiffeId::parse(&response.spiffe_id)
        .map_err(|e| JoinError::BadResponse(format!("spiffe_id: {e}")))?;
    let signed = signed_svid(response.svid, response.bundle)
        .map_err(|e| JoinError::BadResponse(e.to_string()))?;
    let cert =
        WorkloadCert::new(&id, &key, signed).map_err(|e| JoinError::BadResponse(e.to_string()))?;
    Ok((id, cert))
}

/// The mTLS channel to the control plane with the node identity; it reconnects by itself and
/// picks up a renewed node certificate on its next handshake.
pub fn node_channel(addr: SocketAddr, bundle: &SharedBundle, node: Arc<CertSlot>) -> Channel {
    ferrule_proto::channel::lazy(addr, tls_config(bundle, Some(node)))
}

/// Issues certificates through `Identity.Sign` over mTLS with the node identity.
#[derive(Debug, Clone)]
pub struct ControlPlaneAuthority {
    client: IdentityClient<Channel>,
}

impl ControlPlaneAuthority {
    pub fn new(channel: Channel) -> Self {
        Self {
            client: IdentityClient::new(channel),
        }
    }
}

#[tonic::async_trait]
impl CertificateAuthority for ControlPlaneAuthority {
    async fn sign(&self, id: &SpiffeId, csr_der: Vec<u8>) -> Result<SignedSvid, SignError> {
        let request = v1::SignRequest {
            spiffe_id: id.to_string(),
            csr: csr_der,
        };
        let response = self
            .client
            .clone()
            .sign(request)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::PermissionDenied
                | tonic::Code::InvalidArgument
                | tonic::Code::Unauthenticated => SignError::Refused(status.message().to_owned()),
                _ => SignError::Unavailable(status_reason(&status)),
            })?
            .into_inner();
        signed_svid(response.svid, response.bundle)
    }
}

pub fn status_reason(status: &tonic::Status) -> String {
    use std::error::Error;
    let mut reason = status.message().to_owned();
    let mut source = status.source();
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    reason
}

fn signed_svid(
    svid: Option<v1::Svid>,
    bundle: Option<v1::TrustBundle>,
) -> Result<SignedSvid, SignError> {
    let svid = svid.ok_or_else(|| SignError::Unavailable("response without certificate".into()))?;
    let time = |secs: i64| UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    let chain = std::iter::once(svid.leaf)
        .chain(svid.chain)
        .map(CertificateDer::from)
        .collect();
    Ok(SignedSvid {
        chain,
        serial: svid.serial,
        not_before: time(svid.not_before),
        not_after: time(svid.not_after),
        bundle_roots: bundle
            .map(|b| b.roots.into_iter().map(CertificateDer::from).collect())
            .unwrap_or_default(),
    })
}

/// Seconds until `t`, for logs.
pub fn seconds_until(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::now())
        .map_or(0, |d| d.as_secs())
}
