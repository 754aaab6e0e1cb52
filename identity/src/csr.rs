//! Certificate signing requests. The CA reads only the public key from a CSR (after checking its
//! proof of possession); every extension of an issued certificate is decided by the CA.

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;

use crate::spiffe::SpiffeId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("CSR is not valid DER: {0}")]
    Malformed(String),
    #[error("CSR signature does not verify (no proof of possession of the key)")]
    BadSignature,
    #[error("CSR key must be ECDSA P-256")]
    UnsupportedKey,
    #[error("building CSR: {0}")]
    Build(String),
}

/// The parts of a verified CSR the CA uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    /// DER SubjectPublicKeyInfo of the requester's key.
    pub public_key_spki: Vec<u8>,
}

/// Parses a DER CSR, verifies its self-signature and accepts only ECDSA P-256 keys.
pub fn verify_csr(der: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed("trailing data after CSR".into()));
    }
    let spki = &csr.certification_request_info.subject_pki;
    let is_p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256);
    if !is_p256 {
        return Err(CsrError::UnsupportedKey);
    }
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    Ok(VerifiedCsr {
        public_key_spki: spki.raw.to_vec(),
    })
}

/// A fresh workload key (ECDSA P-256), held only in memory.
pub fn generate_workload_key() -> Result<KeyPair, CsrError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| CsrError::Build(e.to_string()))
}

/// A DER CSR for `id` signed by `key`.
pub fn build_csr(key: &KeyPair, id: &SpiffeId) -> Result<Vec<u8>, CsrError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let uri = id
        .as_str()
        .try_into()
        .map_err(|e: rcgen::Error| CsrError::Build(e.to_string()))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params
        .serialize_request(key)
        .map_err(|e| CsrError::Build(e.to_string()))?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap()
    }

    #[test]
    fn accepts_own_csr_and_returns_its_key() {
        let key = generate_workload_key().unwrap();
        let csr = build_csr(&key, &id()).unwrap();
        let verified = verify_csr(&csr).unwrap();
        assert_eq!(
            verified.public_key_spki,
            rcgen::PublicKeyData::subject_public_key_info(&key)
        );
    }

    #[test]
    fn rejects_garbage_and_tampering() {
        assert!(matches!(
            verify_csr(b"garbage"),
            Err(CsrError::Malformed(_))
        ));
        let key = generate_workload_key().unwrap();
        let mut csr = build_csr(&key, &id()).unwrap();
        // Flip a byte inside the signed URI SAN: the signature must no longer verify.
        let pos = csr.windows(7).position(|w| w == b"example").unwrap();
        csr[pos] ^= 0x20;
        assert_eq!(verify_csr(&csr), Err(CsrError::BadSignature));
    }

    #[test]
    fn rejects_other_key_types() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let csr = build_csr(&key, &id()).unwrap();
        assert_eq!(verify_csr(&csr), Err(CsrError::UnsupportedKey));
    }
}
