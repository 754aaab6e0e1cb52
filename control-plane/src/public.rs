//! HTTPS for consumers outside the mesh (gateways, `curl`, `openssl`): the issuing CA's CRL and
//! the trust bundle, as PEM and in the SPIFFE bundle format. A listener of its own, separate from
//! the mTLS gRPC port, that asks for no client certificate.

mod routes;
mod server;
mod spiffe_bundle;

pub use server::{PublicLimits, serve_public};

use std::sync::Arc;
use std::time::Duration;

use ferrule_identity::tls::{self, CertSlot};
use ferrule_identity::{Crl, TrustBundle};

use crate::offline_crls::{CrlStatus, OfflineCrls};
use rustls::ServerConfig;
use rustls::server::NoServerSessionStorage;

/// How often SPIFFE bundle consumers are asked to poll (the spec's suggested default).
pub const SPIFFE_REFRESH_HINT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum PublicError {
    #[error("trust bundle root {index} cannot be published as a JWK: {reason}")]
    BundleRoot { index: usize, reason: String },
}

/// Everything the public endpoint serves, replaced as a whole (through a `watch` channel) on each
/// revocation or bundle change.
#[derive(Debug, Clone)]
pub struct PublicDocuments {
    pub crl: Arc<Crl>,
    /// The issuing CA's CRL followed by the offline CAs' CRLs, as `ssl_crl` wants them.
    pub crl_chain_pem: String,
    /// Every CRL of `crl_chain_pem`, the issuing CA's first.
    pub crl_status: Vec<CrlStatus>,
    /// The trust bundle's roots as PEM.
    pub bundle_pem: String,
    /// The trust bundle as a SPIFFE bundle (JWK Set).
    pub spiffe_bundle_json: String,
}

impl PublicDocuments {
    /// `sequence` becomes `spiffe_sequence`: it must increase whenever the bundle changes.
    pub fn new(
        bundle: &TrustBundle,
        crl: Arc<Crl>,
        offline: &OfflineCrls,
        sequence: u64,
    ) -> Result<Self, PublicError> {
        let issuing = CrlStatus {
            ca: "issuing",
            issuer: crl.issuer().to_owned(),
            next_update: crate::state::unix(crl.next_update()) as i64,
        };
        Ok(Self {
            crl_chain_pem: format!("{}{}", crl.pem(), offline.pem),
            crl_status: std::iter::once(issuing)
                .chain(offline.status.iter().cloned())
                .collect(),
            crl,
            bundle_pem: bundle.to_pem(),
            spiffe_bundle_json: spiffe_bundle::to_json(bundle, sequence, SPIFFE_REFRESH_HINT)?,
        })
    }
}

/// TLS 1.3 with the mesh's crypto provider and a rotating certificate, no client certificate,
/// ALPN `h2` and `http/1.1` (clients that offer no ALPN get either, by sniffing).
pub fn public_server_config(cert: Arc<CertSlot>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported by aws-lc-rs")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
