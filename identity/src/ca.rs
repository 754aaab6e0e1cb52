//! The layered CA: an offline root, an intermediate, and the issuing CA whose key signs
//! X.509-SVIDs through a [`Signer`].

mod crl_check;
mod init;
mod issue;
mod layout;
mod offline_crls;

pub use crl_check::{CheckedCrl, check_offline_crls};
pub use init::{CaInitOptions, init};
#[cfg(any(test, feature = "testing"))]
pub(crate) use issue::leaf_params;
pub use issue::{IssuedSvid, IssuingCa, SvidRequest};
pub use layout::{CaLayout, read_cert_pem, replace_file};
pub use offline_crls::{DEFAULT_OFFLINE_CRL_TTL, renew_offline_crls};

use crate::csr::CsrError;
use crate::signer::SignerError;
use crate::verify::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path} already exists; refusing to overwrite CA material")]
    Exists { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    BadFile { path: String, reason: String },
    #[error("the issuing CA key does not match the issuing CA certificate")]
    KeyMismatch,
    #[error("the issuing CA chain does not verify: {0}")]
    Chain(VerifyError),
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error("invalid request: {0}")]
    BadRequest(String),
}
