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
    /// The private key (PKCS#8 DER), only so that the node identity can be kept in the kernel
    /// keyring across agent restarts; never written to disk.
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

    /// Rebuilds a certificate kept elsewhere (the kernel keyring) from its chain and key.
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
