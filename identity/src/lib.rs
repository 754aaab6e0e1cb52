//! SPIFFE identities and X.509-SVIDs for Ferrule: IDs and patterns, the layered CA and its
//! `Signer`, CSRs, CRLs, trust bundles, verification with typed failure reasons, and the mesh's
//! TLS settings (TLS 1.3 only, mandatory client certificates, post-quantum hybrid key exchange).
#![forbid(unsafe_code)]

pub mod bundle;
pub mod ca;
pub mod crl;
pub mod csr;
pub mod revocation;
pub mod signer;
pub mod spiffe;
pub mod tls;
pub mod verify;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use bundle::{SharedBundle, TrustBundle};
pub use crl::{Crl, RevocationReason, RevokedSerial};
pub use revocation::RevocationList;
pub use spiffe::{IdKind, IdPattern, SpiffeId, SpiffeIdError, TrustDomain};
pub use verify::{CertInfo, Usage, VerifiedSvid, VerifyError};

use rustls_pki_types::CertificateDer;

/// PEM text of `certs`, one CERTIFICATE block each, in order.
pub fn pem_encode_certs(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| pem_block("CERTIFICATE", c)).collect()
}

/// One PEM block with Unix line endings (the `pem` crate defaults to CRLF; rcgen writes keys
/// with LF, so this keeps every file we write alike).
pub fn pem_block(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der.to_vec()), config)
}
