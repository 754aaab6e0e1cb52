//! The mesh's rustls settings in one place: TLS 1.3 only, aws-lc-rs, `X25519MLKEM768` preferred
//! with `X25519` fallback, no resumption and no 0-RTT, and SPIFFE-aware certificate verifiers.

mod certs;
mod failure;
mod verifier;

pub use certs::{CertSlot, CertsError};
pub use failure::HandshakeReason;
pub use verifier::{ExpectedServer, SpiffeClientVerifier, SpiffeServerVerifier, verify_error_of};

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

/// aws-lc-rs with only TLS 1.3 suites and the hybrid post-quantum group first.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .retain(|suite| suite.version() == &rustls::version::TLS13);
    provider.kx_groups = vec![kx_group::X25519MLKEM768, kx_group::X25519];
    Arc::new(provider)
}

/// A server that requires (or, for bootstrap endpoints, allows missing) client certificates.
pub fn server_config(
    certs: Arc<CertSlot>,
    client_verifier: Arc<SpiffeClientVerifier>,
    alpn: &[&[u8]],
) -> ServerConfig {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported by aws-lc-rs")
        .with_client_cert_verifier(client_verifier)
        .with_cert_resolver(certs);
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A client that presents `certs` (when given) and checks the server with `server_verifier`.
pub fn client_config(
    certs: Option<Arc<CertSlot>>,
    server_verifier: Arc<SpiffeServerVerifier>,
    alpn: &[&[u8]],
) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported by aws-lc-rs")
        .dangerous()
        .with_custom_certificate_verifier(server_verifier);
    let mut config = match certs {
        Some(certs) => builder.with_client_cert_resolver(certs),
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
