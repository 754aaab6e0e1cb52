//! The CA files an operator holds: the trust bundle, the issuing chain and the offline CAs' CRLs
//! (chain.pem and ca-crls.pem, found with --ca-dir), the admin certificate, and how long the
//! issuing CA has left.
//!
//! A certificate in the last fifth of its lifetime is a warning, as in `ferrule certs`.

mod anchors;
mod crls;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::SystemTime;

use ferrule_config::check::Check;
use ferrule_identity::ca::{CaLayout, read_cert_pem};
use ferrule_identity::{CertInfo, TrustBundle, Usage, VerifyError};
use rustls::pki_types::CertificateDer;

use crate::certs::Status as Lifetime;
use crate::client::{ConnectArgs, admin_id};
use crate::output::{rfc3339, short_duration, unix_secs};

use anchors::{bundle, chain_pem};

const BUNDLE: &str = "ca-bundle";
const ADMIN: &str = "admin-cert";
const ISSUING: &str = "issuing-ca";

type Certs = Vec<CertificateDer<'static>>;

pub fn checks(connect: &ConnectArgs, now: SystemTime) -> Vec<Check> {
    let Some(bundle_path) = connect.bundle_path() else {
        return vec![Check::fail(
            BUNDLE,
            "no trust bundle to check",
            "pass --ca-dir DIR (or set FERRULE_CA_DIR) or --bundle FILE; `--only node` skips \
             the CA checks",
        )];
    };
    let roots = match read_cert_pem(&bundle_path) {
        Ok(roots) => roots,
        Err(e) => {
            return vec![Check::fail(
                BUNDLE,
                e.to_string(),
                "pass the bundle.pem `ferrule ca init` wrote (--bundle, --ca-dir)",
            )];
        }
    };
    let now_secs = unix_secs(now);
    let mut checks = vec![bundle(&bundle_path, &roots, now_secs)];
    let mut issuing = None;
    if let Some(dir) = connect.ca_dir() {
        let layout = CaLayout::new(dir);
        let (check, chain) = chain_pem(&layout.chain(), &roots, now_secs);
        checks.push(check);
        let intermediates = chain
            .as_deref()
            .and_then(|c| c.get(1..))
            .unwrap_or_default();
        checks.push(crls::offline_crls(&layout, &roots, intermediates, now_secs));
        issuing = chain.and_then(|certs| certs.into_iter().next());
    }
    if let Some(path) = connect.cert_path() {
        let (check, chain) = admin_cert(&path, &roots, now);
        checks.push(check);
        // Without chain.pem, the issuing CA is the one that issued the admin certificate.
        issuing = issuing.or_else(|| chain.and_then(|certs| certs.into_iter().nth(1)));
    }
    if let Some(issuing) = issuing {
        checks.push(issuing_ca(&issuing, now_secs));
    }
    checks
}

/// Where `info` is in its lifetime at `now`, and `expires … (in …)` or `expired …`.
fn lifetime(info: &CertInfo, now: i64) -> (Lifetime, String) {
    let not_after = unix_secs(info.not_after);
    let status = Lifetime::of(unix_secs(info.not_before), not_after, now);
    let text = match u64::try_from(not_after.saturating_sub(now)) {
        Ok(left) if left > 0 => format!(
            "expires {} (in {})",
            rfc3339(not_after),
            short_duration(left)
        ),
        _ => format!("expired {}", rfc3339(not_after)),
    };
    (status, text)
}

/// admin.crt is an admin identity and verifies under the bundle as a client certificate now.
/// Returns its chain (leaf, issuing CA, ...) for the issuing CA check.
fn admin_cert(
    path: &Path,
    roots: &[CertificateDer<'static>],
    now: SystemTime,
) -> (Check, Option<Certs>) {
    let renew = "issue a new admin certificate from the CA (`ferrule ca init` writes the first \
                 one) and pass it with --cert or --ca-dir";
    let chain = match read_cert_pem(path) {
        Ok(chain) => chain,
        Err(e) => {
            return (
                Check::fail(ADMIN, e.to_string(), "pass --cert or --ca-dir"),
                None,
            );
        }
    };
    let id = match admin_id(&chain[0], path) {
        Ok(id) => id,
        Err(e) => {
            let text = crate::output::causes_text(e.chain().map(ToString::to_string));
            return (Check::fail(ADMIN, text, "pass --cert or --ca-dir"), None);
        }
    };
    let info = match CertInfo::parse(&chain[0]) {
        Ok(info) => info,
        Err(e) => return (Check::fail(ADMIN, e.to_string(), renew), None),
    };
    let (status, text) = lifetime(&info, unix_secs(now));
    let verified = TrustBundle::new(id.trust_domain(), roots.to_vec())
        .and_then(|bundle| bundle.verify(&chain, now, Usage::Client));
    let check = match (verified, status) {
        (Err(VerifyError::Expired), Lifetime::Expired) => {
            Check::fail(ADMIN, format!("{id}: {text}"), renew)
        }
        (Err(e), _) => Check::fail(
            ADMIN,
            format!("{} does not verify under the bundle: {e}", path.display()),
            "use admin.crt and bundle.pem of the same CA (--cert, --bundle, --ca-dir)",
        ),
        (Ok(_), Lifetime::Expiring) => Check::warn(
            ADMIN,
            format!("{id} verifies under the bundle; {text}, under a fifth of its lifetime left"),
            renew,
        ),
        (Ok(_), _) => Check::ok(ADMIN, format!("{id} verifies under the bundle; {text}")),
    };
    (check, Some(chain))
}

fn issuing_ca(cert: &CertificateDer<'static>, now: i64) -> Check {
    let info = match CertInfo::parse(cert) {
        Ok(info) => info,
        Err(e) => return Check::fail(ISSUING, e.to_string(), "restore chain.pem"),
    };
    let (status, text) = lifetime(&info, now);
    let detail = format!("{} {text}", info.subject);
    let rotate = "rotate the issuing CA before it expires: certificates it signs cannot \
                  outlive it, and none verifies after it";
    match status {
        Lifetime::Ok | Lifetime::Revoked => Check::ok(ISSUING, detail),
        Lifetime::Expiring => Check::warn(
            ISSUING,
            format!("{detail}, under a fifth of its lifetime left"),
            rotate,
        ),
        Lifetime::Expired => Check::fail(ISSUING, detail, rotate),
    }
}
