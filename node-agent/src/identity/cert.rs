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
        let certified =
            CertSlot::certified_key(&crypto_provider(), signed.chain, key.serialize_der())
                .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            id: id.clone(),
            serial: signed.serial,
            not_before: signed.not_before,
            not_after: signed.not_after,
            received_at: SystemTime::now(),
            certified,
        })
    }

    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        now < self.not_after
    }
}
