//! The certificate a TLS endpoint presents, replaceable at run time so renewals take effect on the
//! next handshake without restarting listeners.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{SignatureScheme, crypto::CryptoProvider};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("private key rejected: {0}")]
    Key(rustls::Error),
}

/// Holds the current certificate chain and key; readers clone an `Arc`, writers swap it.
#[derive(Debug)]
pub struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl CertSlot {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self(RwLock::new(key))
    }

    /// Builds a `CertifiedKey` from a chain (leaf first) and a PKCS#8 DER key held in memory.
    pub fn certified_key(
        provider: &CryptoProvider,
        chain: Vec<CertificateDer<'static>>,
        pkcs8: Vec<u8>,
    ) -> Result<Arc<CertifiedKey>, CertsError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8));
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(CertsError::Key)?;
        Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
    }

    /// Loads a PEM chain and PEM key (the admin identity written by `ferrule ca init`).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, CertsError> {
        let file_err = |path: &Path, reason: String| CertsError::File {
            path: path.display().to_string(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| file_err(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(file_err(cert, "no CERTIFICATE block".into()));
        }
        let key_der =
            PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
        let provider = super::crypto_provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(CertsError::Key)?;
        Ok(Self::new(Arc::new(CertifiedKey::new(chain, signing_key))))
    }

    pub fn get(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for CertSlot {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
