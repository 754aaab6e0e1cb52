//! The CRLs of the offline CAs (root, intermediate), signed by `ferrule ca crl` where their keys
//! live and served after the issuing CA's own: relying parties that check the whole chain
//! (nginx's `ssl_crl`) refuse every client without a current CRL from each CA above the leaf.
//! The file is checked before it is served: every block must be a CRL signed by a root of the
//! trust bundle or an intermediate of the chain, so a wrong file never reaches gateways.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ferrule_identity::ca::IssuingCa;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

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
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.status.iter().filter(move |s| s.next_update <= now)
    }
}

pub fn load(path: &Path, ca: &IssuingCa) -> Result<OfflineCrls, OfflineCrlError> {
    let fail = |reason: String| OfflineCrlError {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut crls = OfflineCrls::default();
    let blocks = pem::parse_many(&bytes).map_err(|e| fail(format!("not PEM: {e}")))?;
    for (index, block) in blocks.iter().enumerate() {
        let status = check_crl(block, ca).map_err(|e| fail(format!("PEM block {index}: {e}")))?;
        crls.pem.push_str(&pem::encode(block));
        crls.status.push(status);
    }
    if crls.status.is_empty() {
        return Err(fail(
            "no X509 CRL block (sign one with `ferrule ca crl`)".into(),
        ));
    }
    Ok(crls)
}

/// The CAs a CRL may come from, with their role: the bundle's roots and the chain above the
/// issuing CA.
fn offline_cas(ca: &IssuingCa) -> Vec<(&'static str, &CertificateDer<'static>)> {
    let roots = ca.bundle().roots().iter().map(|c| ("root", c));
    let intermediates = ca.chain().iter().skip(1).map(|c| ("intermediate", c));
    roots.chain(intermediates).collect()
}

fn check_crl(block: &pem::Pem, ca: &IssuingCa) -> Result<CrlStatus, String> {
    if block.tag() != "X509 CRL" {
        return Err(format!(
            "a {} block, not an X509 CRL (expected the ca-crls.pem of `ferrule ca init` or `ferrule ca crl`)",
            block.tag()
        ));
    }
    let (_, crl) = CertificateRevocationList::from_der(block.contents())
        .map_err(|e| format!("not a valid CRL: {e}"))?;
    let issuer = crl.issuer().to_string();
    // Several CAs may share a name (old and new root during a rotation): the signature decides.
    let named: Vec<_> = offline_cas(ca)
        .into_iter()
        .filter_map(|(role, der)| Some((role, X509Certificate::from_der(der).ok()?.1)))
        .filter(|(_, cert)| cert.subject() == crl.issuer())
        .collect();
    if named.is_empty() {
        return Err(format!(
            "issued by {issuer:?}, neither a root of the trust bundle nor an intermediate of the chain"
        ));
    }
    let role = named
        .iter()
        .find(|(_, cert)| crl.verify_signature(cert.public_key()).is_ok())
        .map(|(role, _)| *role)
        .ok_or_else(|| format!("signature of {issuer:?} does not verify against that CA's key"))?;
    let next_update = crl
        .next_update()
        .ok_or_else(|| format!("the CRL of {issuer:?} has no next update"))?;
    Ok(CrlStatus {
        ca: role,
        issuer,
        next_update: next_update.timestamp(),
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
