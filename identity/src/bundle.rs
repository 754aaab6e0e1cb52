//! Trust bundles: the set of root certificates a trust domain currently accepts. Several roots may
//! be present at once, which is what makes a zero-downtime root rotation possible.

use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::revocation::RevocationList;
use crate::spiffe::TrustDomain;
use crate::verify::VerifyError;

#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    revocations: Arc<RevocationList>,
}

impl TrustBundle {
    pub fn new(
        trust_domain: TrustDomain,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, VerifyError> {
        if roots.is_empty() {
            return Err(VerifyError::EmptyBundle);
        }
        let anchors = roots
            .iter()
            .map(|root| {
                webpki::anchor_from_trusted_cert(root)
                    .map(|anchor| anchor.to_owned())
                    .map_err(|e| VerifyError::Malformed(format!("trust bundle root: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            trust_domain,
            roots,
            anchors,
            revocations: Arc::default(),
        })
    }

    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, VerifyError> {
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| VerifyError::Malformed(format!("trust bundle PEM: {e}")))?;
        Self::new(trust_domain, roots)
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    pub(crate) fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The same roots, refusing the certificates and identities in `revocations`.
    pub fn with_revocations(mut self, revocations: Arc<RevocationList>) -> Self {
        self.revocations = revocations;
        self
    }

    pub fn revocations(&self) -> &RevocationList {
        &self.revocations
    }

    pub fn to_pem(&self) -> String {
        crate::pem_encode_certs(&self.roots)
    }
}

/// A trust bundle that can be replaced while handshakes read it (pushed bundle updates).
#[derive(Debug, Clone)]
pub struct SharedBundle(Arc<RwLock<Arc<TrustBundle>>>);

impl SharedBundle {
    pub fn new(bundle: TrustBundle) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(bundle))))
    }

    pub fn get(&self) -> Arc<TrustBundle> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the roots; the revocation list in force stays (it is pushed separately).
    pub fn set(&self, bundle: TrustBundle) {
        let mut current = self.0.write().unwrap_or_else(|e| e.into_inner());
        let revocations = current.revocations.clone();
        *current = Arc::new(bundle.with_revocations(revocations));
    }

    /// Replaces the revocation list every later verification consults.
    pub fn set_revocations(&self, revocations: Arc<RevocationList>) {
        let mut current = self.0.write().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new((**current).clone().with_revocations(revocations));
    }
}
