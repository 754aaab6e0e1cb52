//! What the identity manager needs from the control plane, behind a trait so the manager can be
//! tested without a network.

use std::time::SystemTime;

use ferrule_identity::SpiffeId;
use rustls_pki_types::CertificateDer;

/// A signed certificate as the control plane returns it.
#[derive(Debug, Clone)]
pub struct SignedSvid {
    /// Leaf first, then the CA chain.
    pub chain: Vec<CertificateDer<'static>>,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The trust bundle's roots as of this response (empty when not sent).
    pub bundle_roots: Vec<CertificateDer<'static>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The control plane refused this request (not entitled, bad CSR, not authenticated).
    #[error("refused by the control plane: {0}")]
    Refused(String),
    /// The control plane could not be reached or failed; worth retrying.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
}

#[tonic::async_trait]
pub trait CertificateAuthority: Send + Sync + std::fmt::Debug + 'static {
    async fn sign(&self, id: &SpiffeId, csr_der: Vec<u8>) -> Result<SignedSvid, SignError>;
}
