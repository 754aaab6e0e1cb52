//! The CA certificates themselves: the roots of the trust bundle, and chain.pem (issuing CA,
//! then intermediate) up to one of them.

use std::path::Path;

use ferrule_config::check::Check;
use ferrule_identity::CertInfo;
use ferrule_identity::ca::read_cert_pem;
use rustls::pki_types::CertificateDer;

use super::{BUNDLE, Certs, Lifetime, lifetime};
use crate::ca::check_signature;
use crate::output::unix_secs;

const CHAIN: &str = "ca-chain";

/// Every root parses, can anchor a chain, and at least one is still valid.
pub(super) fn bundle(path: &Path, roots: &[CertificateDer<'static>], now: i64) -> Check {
    let fix = "replace it with the bundle.pem `ferrule ca init` wrote (--bundle, --ca-dir)";
    let mut anchors = rustls::RootCertStore::empty();
    let mut infos = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        let parsed = CertInfo::parse(root)
            .map_err(|e| e.to_string())
            .and_then(|info| {
                anchors.add(root.clone()).map_err(|e| e.to_string())?;
                Ok(info)
            });
        match parsed {
            Ok(info) => infos.push(info),
            Err(e) => {
                return Check::fail(
                    BUNDLE,
                    format!("{}: root #{}: {e}", path.display(), i + 1),
                    fix,
                );
            }
        }
    }
    let mut by_expiry: Vec<(Lifetime, String, &CertInfo)> = infos
        .iter()
        .map(|info| {
            let (status, text) = lifetime(info, now);
            (status, text, info)
        })
        .collect();
    by_expiry.sort_by_key(|(_, _, info)| info.not_after);
    let summary = format!("{}: {} root(s)", path.display(), roots.len());
    if by_expiry.iter().all(|(s, _, _)| *s == Lifetime::Expired) {
        return Check::fail(
            BUNDLE,
            format!("{summary}, all expired"),
            "rotate to a new root: nothing issued under these verifies any more",
        );
    }
    let (status, text, info) = &by_expiry[0];
    let detail = format!("{summary}; {} {text}", info.subject);
    match status {
        // `Status::of` never says Revoked: revocation is about leaves, not CA certificates.
        Lifetime::Ok | Lifetime::Revoked => Check::ok(BUNDLE, detail),
        Lifetime::Expired => Check::warn(
            BUNDLE,
            detail,
            "remove the expired root from the bundle once nothing chains to it",
        ),
        Lifetime::Expiring => Check::warn(
            BUNDLE,
            detail,
            "add the next root to the bundle now, so the rotation has no downtime",
        ),
    }
}

/// chain.pem (issuing CA, then intermediate) links up to a root of the bundle, each certificate
/// a CA valid now. Returns the chain for the issuing CA check.
pub(super) fn chain_pem(
    path: &Path,
    roots: &[CertificateDer<'static>],
    now: i64,
) -> (Check, Option<Certs>) {
    if !path.exists() {
        let detail = format!(
            "no {}: nothing to verify (only the control plane's host needs it)",
            path.display()
        );
        return (Check::ok(CHAIN, detail), None);
    }
    let certs = match read_cert_pem(path) {
        Ok(certs) => certs,
        Err(e) => return (Check::fail(CHAIN, e.to_string(), "restore chain.pem"), None),
    };
    match verify_chain(&certs, roots, now) {
        Ok(path_text) => (
            Check::ok(CHAIN, format!("{} verifies: {path_text}", path.display())),
            Some(certs),
        ),
        Err(e) => (
            Check::fail(
                CHAIN,
                format!("{}: {e}", path.display()),
                "use chain.pem and bundle.pem from the same CA (the files of one \
                 `ferrule ca init`), or rotate the expired CA",
            ),
            Some(certs),
        ),
    }
}

/// `issuing ← intermediate ← root`, by subject, or why a link does not hold.
fn verify_chain(
    certs: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
    now: i64,
) -> Result<String, String> {
    let mut subjects = Vec::new();
    for (i, cert) in certs.iter().enumerate() {
        let info = CertInfo::parse(cert).map_err(|e| format!("certificate #{}: {e}", i + 1))?;
        if !info.is_ca {
            return Err(format!("{} is not a CA certificate", info.subject));
        }
        if lifetime(&info, now).0 == Lifetime::Expired || unix_secs(info.not_before) > now {
            return Err(format!(
                "{} is not valid now ({})",
                info.subject,
                lifetime(&info, now).1
            ));
        }
        if let Some(issuer) = certs.get(i + 1) {
            check_signature(cert, Some(issuer)).map_err(|e| {
                format!(
                    "{} is not signed by the next certificate: {e}",
                    info.subject
                )
            })?;
        } else {
            let root = roots
                .iter()
                .find(|root| check_signature(cert, Some(root)).is_ok())
                .ok_or_else(|| {
                    format!("{} is not signed by any root of the bundle", info.subject)
                })?;
            let root = CertInfo::parse(root).map_err(|e| e.to_string())?;
            subjects.push(info.subject);
            subjects.push(format!("root {}", root.subject));
            return Ok(subjects.join(" ← "));
        }
        subjects.push(info.subject);
    }
    Err("no certificates".into())
}
