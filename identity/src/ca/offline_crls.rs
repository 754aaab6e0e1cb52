//! CRLs of the offline CAs: the root's (covering the intermediate) and the intermediate's
//! (covering the issuing CA). A relying party that checks revocation along the whole chain
//! (nginx's `ssl_crl` always does, with OpenSSL's `CRL_CHECK_ALL`) refuses every client unless
//! it holds a current CRL from each CA above the leaf, not only the issuing CA's. The control
//! plane has only the issuing key, so these are signed where the offline keys live, by
//! `ferrule ca init` and `ferrule ca crl`, and the control plane serves them after its own.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::Issuer;
use rustls_pki_types::CertificateDer;

use super::layout::{CaLayout, read_cert_pem, replace_file};
use super::{CaError, issue::spki_raw_key};
use crate::crl::{Crl, CrlWindow, sign_crl_by};
use crate::signer::{InMemorySigner, RcgenSigner, Signer as _};

/// Long enough to sign in a yearly-or-better ceremony, short enough that a lost signing
/// routine is noticed (the `FerruleOfflineCrlExpiring` alert fires 30 days ahead).
pub const DEFAULT_OFFLINE_CRL_TTL: Duration = Duration::from_secs(180 * 24 * 3600);

/// Signs an empty CRL for `cert` with `issuer`, valid for `ttl` from now. The CRL number is
/// the signing time in seconds, so a re-signed CRL always supersedes the earlier one.
pub(super) fn sign_offline_crl(
    issuer: &Issuer<'_, RcgenSigner>,
    cert: &CertificateDer<'_>,
    ttl: Duration,
) -> Result<Crl, CaError> {
    let now = SystemTime::now();
    let number = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let window = CrlWindow {
        number,
        this_update: now,
        next_update: now + ttl,
    };
    sign_crl_by(issuer, cert, &[], window)
}

/// PEM text of `crls`, one `X509 CRL` block each, as `ssl_crl` and `-CRLfile` read it.
pub(super) fn crls_pem(crls: &[Crl]) -> String {
    crls.iter().map(Crl::pem).collect()
}

/// Re-signs the root's and the intermediate's CRLs from the keys in `layout`, valid for `ttl`,
/// and replaces `layout.offline_crls()` atomically. Returns the new CRLs, root's first.
pub fn renew_offline_crls(layout: &CaLayout, ttl: Duration) -> Result<Vec<Crl>, CaError> {
    let levels = [
        (layout.root_cert(), layout.root_key()),
        (layout.intermediate_cert(), layout.intermediate_key()),
    ];
    let crls = levels
        .iter()
        .map(|(cert, key)| {
            let (cert, issuer) = offline_level(cert, key)?;
            sign_offline_crl(&issuer, &cert, ttl)
        })
        .collect::<Result<Vec<_>, _>>()?;
    replace_file(&layout.offline_crls(), &crls_pem(&crls))?;
    Ok(crls)
}

/// A CA certificate and the issuer made from its key file, refusing a key of another CA.
fn offline_level(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(CertificateDer<'static>, Issuer<'static, RcgenSigner>), CaError> {
    let cert = read_cert_pem(cert_path)?.swap_remove(0);
    let signer = Arc::new(InMemorySigner::from_pkcs8_file(key_path)?);
    if spki_raw_key(&cert)? != signer.public_key_raw() {
        return Err(CaError::BadFile {
            path: key_path.display().to_string(),
            reason: format!("not the key of {}", cert_path.display()),
        });
    }
    let issuer = Issuer::from_ca_cert_der(&cert, RcgenSigner(signer))?;
    Ok((cert, issuer))
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

    use super::*;
    use crate::ca::{CaInitOptions, init};
    use crate::spiffe::TrustDomain;

    fn new_ca() -> (tempfile::TempDir, CaLayout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = CaLayout::new(dir.path().join("ca"));
        init(
            &layout,
            &CaInitOptions::new(TrustDomain::new("example.org").unwrap()),
        )
        .unwrap();
        (dir, layout)
    }

    /// (issuer subject, next update) of each CRL in the file, after checking its signature
    /// against the CA certificate with that subject.
    fn read_verified(layout: &CaLayout) -> Vec<(String, i64)> {
        let pem = std::fs::read(layout.offline_crls()).unwrap();
        let cas: Vec<_> = [layout.root_cert(), layout.intermediate_cert()]
            .iter()
            .map(|p| read_cert_pem(p).unwrap().swap_remove(0))
            .collect();
        pem::parse_many(pem)
            .unwrap()
            .iter()
            .map(|block| {
                assert_eq!(block.tag(), "X509 CRL");
                let (_, crl) = CertificateRevocationList::from_der(block.contents()).unwrap();
                let signer = cas
                    .iter()
                    .map(|der| X509Certificate::from_der(der).unwrap().1)
                    .find(|ca| ca.subject() == crl.issuer())
                    .expect("an offline CA issued the CRL");
                crl.verify_signature(signer.public_key()).unwrap();
                assert_eq!(crl.iter_revoked_certificates().count(), 0);
                let next = crl.next_update().unwrap().timestamp();
                (crl.issuer().to_string(), next)
            })
            .collect()
    }

    #[test]
    fn init_signs_a_crl_for_the_root_and_the_intermediate() {
        let (_dir, layout) = new_ca();
        let crls = read_verified(&layout);
        assert_eq!(crls.len(), 2);
        assert!(crls[0].0.contains("Root CA"), "{crls:?}");
        assert!(crls[1].0.contains("Intermediate CA"), "{crls:?}");
        let in_180_days = SystemTime::now() + DEFAULT_OFFLINE_CRL_TTL;
        let expected = in_180_days.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!((crls[0].1 - expected).abs() < 60, "{crls:?}");
    }

    #[test]
    fn renewal_replaces_the_file_with_fresh_crls() {
        let (_dir, layout) = new_ca();
        let ttl = Duration::from_secs(7 * 24 * 3600);
        let crls = renew_offline_crls(&layout, ttl).unwrap();
        assert_eq!(crls.len(), 2);
        let written = read_verified(&layout);
        let expected = crls[0].next_update().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(written[0].1, expected.as_secs() as i64);
    }

    #[test]
    fn renewal_refuses_a_key_of_another_ca() {
        let (_dir, layout) = new_ca();
        let before = std::fs::read(layout.offline_crls()).unwrap();
        std::fs::copy(layout.issuing_key(), layout.root_key()).unwrap();
        let err = renew_offline_crls(&layout, DEFAULT_OFFLINE_CRL_TTL).unwrap_err();
        assert!(err.to_string().contains("not the key of"), "{err}");
        assert_eq!(std::fs::read(layout.offline_crls()).unwrap(), before);
    }

    #[test]
    fn renewal_without_the_offline_keys_names_the_missing_file() {
        let (_dir, layout) = new_ca();
        std::fs::remove_file(layout.intermediate_key()).unwrap();
        let err = renew_offline_crls(&layout, DEFAULT_OFFLINE_CRL_TTL).unwrap_err();
        assert!(err.to_string().contains("intermediate.key"), "{err}");
    }
}
