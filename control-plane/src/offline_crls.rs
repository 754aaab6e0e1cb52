//! The CRLs of the offline CAs (root, intermediate), signed by `ferrule ca crl` where their keys
//! live and served after the issuing CA's own: relying parties that check the whole chain
//! (nginx's `ssl_crl`) refuse every client without a current CRL from each CA above the leaf.
//! The file is checked before it is served: every block must be a CRL signed by a root of the
//! trust bundle or an intermediate of the chain, so a wrong file never reaches gateways.

use std::path::Path;
use std::time::SystemTime;

use ferrule_identity::ca::{IssuingCa, check_offline_crls};

/// The validity of one CRL served from `/crl.pem`, for the expiry metric and alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlStatus {
    /// `issuing`, `intermediate` or `root`.
    pub ca: &'static str,
    /// The CRL issuer's distinguished name.
    pub issuer: String,
    /// Unix seconds.
    pub next_update: i64,
}

/// A checked `ca.offline_crls` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineCrls {
    /// The file's CRLs, re-encoded as PEM.
    pub pem: String,
    pub status: Vec<CrlStatus>,
}

#[derive(Debug, thiserror::Error)]
#[error("ca.offline_crls {path}: {reason}")]
pub struct OfflineCrlError {
    path: String,
    reason: String,
}

impl OfflineCrls {
    /// CRLs whose next update has passed: gateways that check the chain now refuse clients.
    pub fn expired(&self, now: SystemTime) -> impl Iterator<Item = &CrlStatus> {
        let now = crate::state::unix(now) as i64;
        self.status.iter().filter(move |s| s.next_update <= now)
    }
}

pub fn load(path: &Path, ca: &IssuingCa) -> Result<OfflineCrls, OfflineCrlError> {
    let fail = |reason: String| OfflineCrlError {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let intermediates = ca.chain().get(1..).unwrap_or_default();
    let checked = check_offline_crls(&bytes, ca.bundle().roots(), intermediates).map_err(fail)?;
    Ok(OfflineCrls {
        pem: checked.iter().map(|c| c.pem.as_str()).collect(),
        status: checked
            .into_iter()
            .map(|c| CrlStatus {
                ca: c.role,
                issuer: c.issuer,
                next_update: c.next_update,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use ferrule_identity::testing::TestCa;

    use super::*;

    fn load_text(test: &TestCa, text: &str) -> Result<OfflineCrls, OfflineCrlError> {
        let path = test.dir.path().join("crls.pem");
        std::fs::write(&path, text).unwrap();
        load(&path, &test.ca)
    }

    #[test]
    fn loads_the_root_and_intermediate_crls_of_ca_init() {
        let test = TestCa::new("example.org");
        let crls = load(&test.layout.offline_crls(), &test.ca).unwrap();
        let roles: Vec<_> = crls.status.iter().map(|s| s.ca).collect();
        assert_eq!(roles, ["root", "intermediate"]);
        assert!(crls.status[0].issuer.contains("Root CA"), "{crls:?}");
        assert_eq!(crls.pem.matches("BEGIN X509 CRL").count(), 2);
        assert_eq!(crls.expired(SystemTime::now()).count(), 0);
        let in_a_year = SystemTime::now() + std::time::Duration::from_secs(365 * 24 * 3600);
        assert_eq!(crls.expired(in_a_year).count(), 2);
    }

    #[test]
    fn refuses_crls_of_another_ca_and_files_without_crls() {
        let test = TestCa::new("example.org");
        let other = TestCa::new("example.org");
        let foreign = std::fs::read_to_string(other.layout.offline_crls()).unwrap();
        let err = load_text(&test, &foreign).unwrap_err().to_string();
        assert!(
            err.contains("does not verify against that CA's key"),
            "{err}"
        );
        let other_domain = TestCa::new("other.example");
        let foreign = std::fs::read_to_string(other_domain.layout.offline_crls()).unwrap();
        let err = load_text(&test, &foreign).unwrap_err().to_string();
        assert!(err.contains("neither a root of the trust bundle"), "{err}");

        let bundle = std::fs::read_to_string(test.layout.bundle()).unwrap();
        let err = load_text(&test, &bundle).unwrap_err().to_string();
        assert!(err.contains("not an X509 CRL"), "{err}");

        let err = load_text(&test, "").unwrap_err().to_string();
        assert!(err.contains("no X509 CRL block"), "{err}");

        let missing = load(&test.dir.path().join("nope.pem"), &test.ca).unwrap_err();
        assert!(missing.to_string().contains("nope.pem"), "{missing}");
    }

    #[test]
    fn refuses_a_crl_whose_signature_does_not_verify() {
        let test = TestCa::new("example.org");
        let text = std::fs::read_to_string(test.layout.offline_crls()).unwrap();
        let mut blocks = pem::parse_many(&text).unwrap();
        let mut der = blocks[0].contents().to_vec();
        let last = der.len() - 3;
        der[last] ^= 0x01; // inside the signature value
        blocks[0] = pem::Pem::new("X509 CRL", der);
        let err = load_text(&test, &pem::encode_many(&blocks))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not verify"), "{err}");
    }
}
