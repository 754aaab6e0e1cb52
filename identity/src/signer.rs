//! The CA's signing key behind a trait, so the issuing key can live in a file (development) or in
//! an HSM through PKCS#11 without the CA code knowing which.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SignatureAlgorithm};

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("reading key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key {path} is not a PKCS#8 ECDSA P-256 or P-384 private key: {reason}")]
    BadKey { path: String, reason: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The signature algorithms a CA key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256Sha256,
    EcdsaP384Sha384,
}

impl KeyAlgorithm {
    pub(crate) fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256Sha256 => &PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384Sha384 => &PKCS_ECDSA_P384_SHA384,
        }
    }

    fn from_rcgen(alg: &SignatureAlgorithm) -> Option<Self> {
        if alg == &PKCS_ECDSA_P256_SHA256 {
            Some(Self::EcdsaP256Sha256)
        } else if alg == &PKCS_ECDSA_P384_SHA384 {
            Some(Self::EcdsaP384Sha384)
        } else {
            None
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EcdsaP256Sha256 => "ECDSA P-256",
            Self::EcdsaP384Sha384 => "ECDSA P-384",
        })
    }
}

/// A private key that signs certificates. Implementations must be cheap to share across threads.
pub trait Signer: Send + Sync + fmt::Debug {
    fn algorithm(&self) -> KeyAlgorithm;
    /// The raw public key (for ECDSA the uncompressed point), as placed in SubjectPublicKeyInfo.
    fn public_key_raw(&self) -> &[u8];
    /// Signs `message`, returning the signature in the X.509 encoding (DER for ECDSA).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError>;
}

/// A key held in process memory, loaded from a PKCS#8 PEM file or freshly generated.
pub struct InMemorySigner {
    key: KeyPair,
    algorithm: KeyAlgorithm,
}

impl fmt::Debug for InMemorySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemorySigner")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl InMemorySigner {
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, SignerError> {
        let key = KeyPair::generate_for(algorithm.rcgen())
            .map_err(|e| SignerError::Sign(e.to_string()))?;
        Ok(Self { key, algorithm })
    }

    pub fn from_pkcs8_pem(pem: &str, origin: &str) -> Result<Self, SignerError> {
        let bad = |reason: String| SignerError::BadKey {
            path: origin.to_owned(),
            reason,
        };
        let key = KeyPair::from_pem(pem).map_err(|e| bad(e.to_string()))?;
        let algorithm = KeyAlgorithm::from_rcgen(key.algorithm())
            .ok_or_else(|| bad("unsupported key algorithm".into()))?;
        Ok(Self { key, algorithm })
    }

    /// The file backend: a PKCS#8 PEM key on disk (for development and the offline CA tooling).
    pub fn from_pkcs8_file(path: &Path) -> Result<Self, SignerError> {
        let pem = std::fs::read_to_string(path).map_err(|source| SignerError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pkcs8_pem(&pem, &path.display().to_string())
    }

    pub fn pkcs8_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

impl Signer for InMemorySigner {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key_raw(&self) -> &[u8] {
        rcgen::PublicKeyData::der_bytes(&self.key)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        rcgen::SigningKey::sign(&self.key, message).map_err(|e| SignerError::Sign(e.to_string()))
    }
}

/// Adapts any [`Signer`] to rcgen's signing interface.
#[derive(Debug, Clone)]
pub(crate) struct RcgenSigner(pub Arc<dyn Signer>);

impl rcgen::PublicKeyData for RcgenSigner {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key_raw()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm().rcgen()
    }
}

impl rcgen::SigningKey for RcgenSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let signer = InMemorySigner::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let again = InMemorySigner::from_pkcs8_pem(&signer.pkcs8_pem(), "test").unwrap();
        assert_eq!(signer.public_key_raw(), again.public_key_raw());
        assert_eq!(again.algorithm(), KeyAlgorithm::EcdsaP256Sha256);
    }

    #[test]
    fn garbage_key_names_the_file() {
        let err = InMemorySigner::from_pkcs8_pem("not a key", "/x/issuing.key").unwrap_err();
        assert!(err.to_string().contains("/x/issuing.key"), "{err}");
    }
}
