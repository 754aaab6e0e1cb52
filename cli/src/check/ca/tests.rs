//! The CA checks on a CA fresh from `ca init`, on one seen months later, and on mixed CAs.

use std::time::Duration;

use ferrule_config::check::Status;
use ferrule_identity::TrustDomain;
use ferrule_identity::ca::{CaInitOptions, init};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

/// A fresh CA (issuing CA 365 days, admin 90 days) in a temporary directory.
fn ca() -> (tempfile::TempDir, CaLayout) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = CaLayout::new(tmp.path().join("ca"));
    init(
        &layout,
        &CaInitOptions::new(TrustDomain::new("example.org").unwrap()),
    )
    .unwrap();
    (tmp, layout)
}

fn roots(layout: &CaLayout) -> Certs {
    read_cert_pem(&layout.bundle()).unwrap()
}

#[test]
fn a_fresh_ca_passes_every_check() {
    let (_tmp, layout) = ca();
    let now = SystemTime::now();
    let secs = unix_secs(now);
    let roots = roots(&layout);
    let bundle = bundle(&layout.bundle(), &roots, secs);
    let (chain, issuing) = chain_pem(&layout.chain(), &roots, secs);
    let (admin, _) = admin_cert(&layout.admin_cert(), &roots, now);
    let issuing = issuing_ca(&issuing.unwrap()[0], secs);
    for check in [&bundle, &chain, &admin, &issuing] {
        assert_eq!(check.status, Status::Ok, "{check:?}");
    }
    assert!(chain.detail.contains(" ← root "), "{chain:?}");
    assert!(
        admin
            .detail
            .starts_with("spiffe://example.org/ferrule/admin/admin verifies"),
        "{admin:?}"
    );
    assert!(
        issuing
            .detail
            .starts_with("O=Ferrule, CN=example.org Ferrule Issuing CA expires "),
        "{issuing:?}"
    );
    // 365 days from a few moments ago.
    assert!(
        issuing.detail.ends_with("(in 365d)") || issuing.detail.ends_with("(in 364d 23h)"),
        "{issuing:?}"
    );
}

#[test]
fn ageing_certificates_warn_then_fail() {
    let (_tmp, layout) = ca();
    let roots = roots(&layout);
    let later = SystemTime::now() + 80 * DAY;
    let (admin, _) = admin_cert(&layout.admin_cert(), &roots, later);
    assert_eq!(admin.status, Status::Warn, "{admin:?}");
    assert!(admin.detail.contains("under a fifth"), "{admin:?}");

    let much_later = SystemTime::now() + 91 * DAY;
    let (admin, _) = admin_cert(&layout.admin_cert(), &roots, much_later);
    assert_eq!(admin.status, Status::Fail, "{admin:?}");
    assert!(
        admin.detail.contains("expired") && admin.hint.as_deref().unwrap().contains("--cert"),
        "{admin:?}"
    );

    let issuing = read_cert_pem(&layout.chain()).unwrap().remove(0);
    let check = issuing_ca(&issuing, unix_secs(SystemTime::now() + 300 * DAY));
    assert_eq!(check.status, Status::Warn, "{check:?}");
    let check = issuing_ca(&issuing, unix_secs(SystemTime::now() + 366 * DAY));
    assert_eq!(check.status, Status::Fail, "{check:?}");
    assert!(
        check.hint.as_deref().unwrap().contains("rotate"),
        "{check:?}"
    );
}

#[test]
fn a_chain_from_another_ca_does_not_verify() {
    let (_tmp, ours) = ca();
    let (_tmp2, theirs) = ca();
    let now = SystemTime::now();
    let (chain, _) = chain_pem(&theirs.chain(), &roots(&ours), unix_secs(now));
    assert_eq!(chain.status, Status::Fail, "{chain:?}");
    assert!(
        chain
            .detail
            .contains("is not signed by any root of the bundle"),
        "{chain:?}"
    );
    let (admin, _) = admin_cert(&theirs.admin_cert(), &roots(&ours), now);
    assert_eq!(admin.status, Status::Fail, "{admin:?}");
    assert!(
        admin.detail.contains("does not verify under the bundle"),
        "{admin:?}"
    );
}

#[test]
fn a_missing_chain_pem_is_fine() {
    let (_tmp, layout) = ca();
    let missing = layout.dir().join("nope.pem");
    let (check, certs) = chain_pem(&missing, &roots(&layout), 0);
    assert_eq!(check.status, Status::Ok, "{check:?}");
    assert!(certs.is_none());
}

fn offline_check(layout: &CaLayout, now: SystemTime) -> Check {
    let chain = read_cert_pem(&layout.chain()).unwrap();
    crls::offline_crls(layout, &roots(layout), &chain[1..], unix_secs(now))
}

#[test]
fn offline_crls_pass_then_warn_a_month_ahead_then_fail() {
    let (_tmp, layout) = ca();
    let fresh = offline_check(&layout, SystemTime::now());
    assert_eq!(fresh.status, Status::Ok, "{fresh:?}");
    assert!(
        fresh
            .detail
            .starts_with("root and intermediate CRLs verify"),
        "{fresh:?}"
    );

    let late = offline_check(&layout, SystemTime::now() + 160 * DAY);
    assert_eq!(late.status, Status::Warn, "{late:?}");
    assert!(
        late.hint
            .as_deref()
            .unwrap()
            .contains("ferrule ca crl --dir"),
        "{late:?}"
    );

    let expired = offline_check(&layout, SystemTime::now() + 181 * DAY);
    assert_eq!(expired.status, Status::Fail, "{expired:?}");
    assert!(expired.detail.contains("expired"), "{expired:?}");
}

#[test]
fn offline_crls_missing_or_of_another_ca_are_named() {
    let (_tmp, layout) = ca();
    let (_other_tmp, other) = ca();
    std::fs::copy(other.offline_crls(), layout.offline_crls()).unwrap();
    let foreign = offline_check(&layout, SystemTime::now());
    assert_eq!(foreign.status, Status::Fail, "{foreign:?}");
    assert!(foreign.detail.contains("does not verify"), "{foreign:?}");

    std::fs::remove_file(layout.offline_crls()).unwrap();
    let missing = offline_check(&layout, SystemTime::now());
    assert_eq!(missing.status, Status::Warn, "{missing:?}");
    assert!(missing.detail.contains("nginx ssl_crl"), "{missing:?}");
}
