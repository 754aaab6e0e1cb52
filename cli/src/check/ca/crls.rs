//! The offline CAs' CRLs (ca-crls.pem in --ca-dir): gateways that check revocation along the
//! whole chain (nginx `ssl_crl`) refuse every client once one of them is missing or expired.

use std::path::Path;

use ferrule_config::check::Check;
use ferrule_identity::ca::{CaLayout, check_offline_crls};
use rustls::pki_types::CertificateDer;

use crate::output::{rfc3339, short_duration};

const OFFLINE_CRLS: &str = "offline-crls";

/// Warn this long before the first of them expires, as the FerruleOfflineCrlExpiring alert does.
const NOTICE_SECS: i64 = 30 * 86_400;

pub(super) fn offline_crls(
    layout: &CaLayout,
    roots: &[CertificateDer<'static>],
    intermediates: &[CertificateDer<'static>],
    now: i64,
) -> Check {
    let path = layout.offline_crls();
    let resign = format!(
        "re-sign them with `ferrule ca crl --dir {}` where root.key and intermediate.key are, and \
         copy ca-crls.pem to the control plane's ca.offline_crls",
        layout.dir().display()
    );
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => return missing(&path, &e, &resign),
    };
    let crls = match check_offline_crls(&bytes, roots, intermediates) {
        Ok(crls) => crls,
        Err(e) => return Check::fail(OFFLINE_CRLS, format!("{}: {e}", path.display()), resign),
    };
    let first = crls
        .iter()
        .min_by_key(|c| c.next_update)
        .expect("check_offline_crls returns at least one CRL");
    let roles: Vec<_> = crls.iter().map(|c| c.role).collect();
    let left = first.next_update.saturating_sub(now);
    let when = rfc3339(first.next_update);
    if left <= 0 {
        let detail = format!("the {} CA's CRL expired {when}", first.role);
        return Check::fail(OFFLINE_CRLS, detail, resign);
    }
    let detail = format!(
        "{} CRLs verify; the {} CA's expires {when} (in {})",
        roles.join(" and "),
        first.role,
        short_duration(left as u64)
    );
    if left < NOTICE_SECS {
        Check::warn(OFFLINE_CRLS, detail, resign)
    } else {
        Check::ok(OFFLINE_CRLS, detail)
    }
}

fn missing(path: &Path, error: &std::io::Error, resign: &str) -> Check {
    Check::warn(
        OFFLINE_CRLS,
        format!(
            "{}: {error}; gateways that check the whole chain (nginx ssl_crl) will refuse every \
             client",
            path.display()
        ),
        resign,
    )
}
