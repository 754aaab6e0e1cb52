//! The agent's identity manager: workload keys generated in memory, certificates fetched on demand
//! per identity and shared by every pod of that identity on the node, renewed at half-life with
//! jitter, retried with backoff while the still-valid certificate keeps being served.

mod authority;
mod cert;
mod manager;
mod schedule;

pub use authority::{CertificateAuthority, SignError, SignedSvid};
pub use cert::{WorkloadCert, new_key_and_csr};
pub use manager::IdentityManager;
pub use schedule::RenewalPolicy;

use ferrule_identity::SpiffeId;

#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error("no valid certificate for {id} yet: {reason}")]
    Unavailable { id: SpiffeId, reason: String },
    #[error("building the key or CSR: {0}")]
    Key(String),
    #[error("the control plane returned an unusable certificate: {0}")]
    BadCertificate(String),
}
