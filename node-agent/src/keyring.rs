//! Keeps the node identity (certificate chain and key) in the kernel's user keyring, so that a
//! restarted agent rejoins without a new token while the key still never touches a disk. The
//! entry expires with the certificate; a reboot clears it (and the node then needs a new token).

use std::time::SystemTime;

use linux_keyutils::{KeyPermissionsBuilder, KeyRing, KeyRingIdentifier, Permission};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::identity::WorkloadCert;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("kernel keyring: {0}")]
    Kernel(String),
    #[error("keyring entry {0:?} is unusable: {1}")]
    Corrupt(String, String),
}

/// One node identity's slot in root's user keyring.
#[derive(Debug, Clone)]
pub struct NodeKeyring {
    description: String,
}

fn kernel(e: linux_keyutils::KeyError) -> KeyringError {
    KeyringError::Kernel(format!("{e:?}"))
}

impl NodeKeyring {
    /// `scope` tells apart agents on one machine (tests run several): trust domain and node name.
    pub fn new(scope: &str) -> Self {
        Self {
            description: format!("ferrule:node:{scope}"),
        }
    }

    fn ring() -> Result<KeyRing, KeyringError> {
        KeyRing::from_special_id(KeyRingIdentifier::User, false).map_err(kernel)
    }

    /// Stores (or replaces) the identity; the entry times out when the certificate expires.
    pub fn store(&self, cert: &WorkloadCert) -> Result<(), KeyringError> {
        let mut payload = ferrule_identity::pem_encode_certs(&cert.certified.cert);
        payload.push_str(&ferrule_identity::pem_block("PRIVATE KEY", &cert.pkcs8));
        let key = Self::ring()?
            .add_key(&self.description, payload.as_bytes())
            .map_err(kernel)?;
        // Readable by root processes outside this session too (a restarted agent is one).
        let perms = KeyPermissionsBuilder::builder()
            .posessor(Permission::ALL)
            .user(Permission::ALL)
            .build();
        key.set_perms(perms).map_err(kernel)?;
        let left = cert
            .not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        key.set_timeout(left.as_secs().max(1) as usize)
            .map_err(kernel)
    }

    /// The stored identity, if any and still valid.
    pub fn load(&self) -> Result<Option<WorkloadCert>, KeyringError> {
        let key = match Self::ring()?.search(&self.description) {
            Ok(key) => key,
            Err(_) => return Ok(None),
        };
        let payload = key.read_to_vec().map_err(kernel)?;
        let corrupt = |e: String| KeyringError::Corrupt(self.description.clone(), e);
        let chain = CertificateDer::pem_slice_iter(&payload)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(e.to_string()))?;
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(&payload)
            .map_err(|e| corrupt(e.to_string()))?;
        let cert = WorkloadCert::restore(chain, pkcs8.secret_pkcs8_der().to_vec())
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(cert.is_valid_at(SystemTime::now()).then_some(cert))
    }

    pub fn remove(&self) -> Result<(), KeyringError> {
        let ring = Self::ring()?;
        if let Ok(key) = ring.search(&self.description) {
            ring.unlink_key(key).map_err(kernel)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferrule_identity::SpiffeId;
    use ferrule_identity::testing::TestCa;

    use super::*;
    use crate::identity::{SignedSvid, new_key_and_csr};

    #[test]
    fn identity_survives_in_the_keyring_and_is_removed() {
        let ca = TestCa::new("example.org");
        let id = SpiffeId::parse("spiffe://example.org/node/keyring-test").unwrap();
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

        let slot = NodeKeyring::new(&format!("test-{}", std::process::id()));
        slot.store(&cert).unwrap();
        let back = slot.load().unwrap().expect("stored identity");
        assert_eq!(back.id, id);
        assert_eq!(back.serial, svid.serial);
        assert_eq!(*back.pkcs8, *cert.pkcs8);
        slot.remove().unwrap();
        assert!(slot.load().unwrap().is_none());
    }
}
