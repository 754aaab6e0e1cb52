//! A workload certificate with its private key, which exists only in this process's memory.

use std::sync::Arc;
use std::time::SystemTime;

use ferrule_identity::csr::{build_csr, generate_workload_key};
use ferrule_identity::tls::{CertSlot, crypto_provider};
use ferrule_identity::{CertInfo, SpiffeId};
use rcgen::KeyPair;
use rustls::sign::CertifiedKey;

use super::{IdentityError, SignedSvid};

#[derive(Debug, Clone)]
pub struct WorkloadCert {
    pub id: SpiffeId,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// When this process received it: renewal is timed from here, not from the (backdated)
    /// not-before.
    pub received_at: SystemTime,
    /// Chain and signing key, ready for rustls.
    pub certified: Arc<CertifiedKey>,
    /// The private key (PKCS#8 DER), only so that the node identity can be handed to a
    /// successor agent over the handover socket; never written anywhere.
    pub(crate) pkcs8: Arc<Vec<u8>>,
}

/// A fresh key and a CSR for `id`.
pub fn new_key_and_csr(id: &SpiffeId) -> Result<(KeyPair, Vec<u8>), IdentityError> {
    let key = generate_workload_key().map_err(|e| IdentityError::Key(e.to_string()))?;
    let csr = build_csr(&key, id).map_err(|e| IdentityError::Key(e.to_string()))?;
    Ok((key, csr))
}

impl WorkloadCert {
    /// Pairs a signed certificate with its key, checking that it is for `id`.
    pub fn new(id: &SpiffeId, key: &KeyPair, signed: SignedSvid) -> Result<Self, IdentityError> {
        let bad = |reason: String| IdentityError::BadCertificate(reason);
        let leaf = signed
            .chain
            .first()
            .ok_or_else(|| bad("empty chain".into()))?;
        let info = CertInfo::parse(leaf).map_err(|e| bad(e.to_string()))?;
        let got = info.spiffe_id().map_err(|e| bad(e.to_string()))?;
        if &got != id {
            return Err(bad(format!("asked for {id}, got {got}")));
        }
        let pkcs8 = Arc::new(key.serialize_der());
        let certified = CertSlot::certified_key(&crypto_provider(), signed.chain, pkcs8.to_vec())
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            id: id.clone(),
            serial: signed.serial,
            not_before: signed.not_before,
            not_after: signed.not_after,
            received_at: SystemTime::now(),
            certified,
            pkcs8,
        })
    }

    /// Chain and key as PEM: what a running agent hands its successor.
    pub(crate) fn to_pem(&self) -> String {
        let mut pem = ferrule_identity::pem_encode_certs(&self.certified.cert);
        pem.push_str(&ferrule_identity::pem_block("PRIVATE KEY", &self.pkcs8));
        pem
    }

    /// The certificate [`Self::to_pem`] wrote.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Self, IdentityError> {
        use rustls_pki_types::pem::PemObject as _;
        let bad = |reason: String| IdentityError::BadCertificate(reason);
        let chain = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem)
            .map_err(|e| bad(e.to_string()))?;
        Self::restore(chain, key.secret_pkcs8_der().to_vec())
    }

    /// Rebuilds a certificate from its chain and key.
    pub fn restore(
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        pkcs8: Vec<u8>,
    ) -> Result<Self, IdentityError> {
        let bad = |reason: String| IdentityError::BadCertificate(reason);
        let leaf = chain.first().ok_or_else(|| bad("empty chain".into()))?;
        let info = CertInfo::parse(leaf).map_err(|e| bad(e.to_string()))?;
        let id = info.spiffe_id().map_err(|e| bad(e.to_string()))?;
        let certified = CertSlot::certified_key(&crypto_provider(), chain, pkcs8.clone())
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            id,
            serial: info.serial,
            not_before: info.not_before,
            not_after: info.not_after,
            received_at: SystemTime::now(),
            certified,
            pkcs8: Arc::new(pkcs8),
        })
    }

    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        now < self.not_after
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferrule_identity::testing::TestCa;

    use super::*;

    #[test]
    fn the_pem_handed_to_a_successor_restores_the_same_identity_and_key() {
        let ca = TestCa::new("example.org");
        let id = SpiffeId::parse("spiffe://example.org/node/handover-test").unwrap();
        let (key, csr) = new_key_and_csr(&id).unwrap();
        let csr = ferrule_identity::csr::verify_csr(&csr).unwrap();
        let svid = ca
            .ca
            .issue(&ferrule_identity::ca::SvidRequest {
                id: &id,
                public_key_spki: &csr.public_key_spki,
                ttl: Duration::from_secs(600),
                dns_names: &[],
                ip_addresses: &[],
            })
            .unwrap();
        let signed = SignedSvid {
            chain: svid.full_chain(),
            serial: svid.serial.clone(),
            not_before: svid.not_before,
            not_after: svid.not_after,
            bundle_roots: vec![],
        };
        let cert = WorkloadCert::new(&id, &key, signed).unwrap();

        let back = WorkloadCert::from_pem(cert.to_pem().as_bytes()).unwrap();
        assert_eq!(back.id, id);
        assert_eq!(back.serial, svid.serial);
        assert_eq!(*back.pkcs8, *cert.pkcs8);
        assert!(WorkloadCert::from_pem(b"not pem").is_err());
    }
}
