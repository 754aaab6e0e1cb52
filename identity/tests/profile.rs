//! The X.509-SVID profile the verifier enforces beyond the chain: each certificate here breaks
//! one rule and is refused with its own reason; CAs made by older versions still verify.

use std::process::Command;
use std::time::SystemTime;

use ferrule_identity::testing::TestCa;
use ferrule_identity::tls::HandshakeReason;
use ferrule_identity::{SpiffeId, Usage, VerifiedSvid, VerifyError};
use rcgen::{
    BasicConstraints, CustomExtension, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

const ID: &str = "spiffe://example.org/ns/shop/sa/web";

fn id() -> SpiffeId {
    SpiffeId::parse(ID).unwrap()
}

fn verify(
    ca: &TestCa,
    chain: &[CertificateDer<'_>],
    usage: Usage,
) -> Result<VerifiedSvid, VerifyError> {
    ca.ca.bundle().verify(chain, SystemTime::now(), usage)
}

/// Refused with `reason` (the label of metrics and logs) both as client and as server.
fn assert_refused(ca: &TestCa, chain: &[CertificateDer<'_>], reason: &str) -> VerifyError {
    let mut last = None;
    for usage in [Usage::Client, Usage::Server] {
        let err = verify(ca, chain, usage).expect_err("a certificate that breaks the profile");
        assert_eq!(err.reason(), reason, "{usage:?}: {err}");
        assert_eq!(HandshakeReason::of_verify(&err).as_str(), reason, "{err}");
        last = Some(err);
    }
    last.unwrap()
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

#[test]
fn the_leaf_as_issued_passes_the_profile() {
    let ca = TestCa::new("example.org");
    let chain = ca.craft_leaf(&id(), |_| {});
    for usage in [Usage::Client, Usage::Server] {
        assert_eq!(verify(&ca, &chain, usage).unwrap().id, id());
    }
}

#[test]
fn a_ca_certificate_as_leaf_is_refused() {
    let ca = TestCa::new("example.org");
    let chain = ca.craft_leaf(&id(), |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    });
    let err = assert_refused(&ca, &chain, "not_svid");
    assert_eq!(err, VerifyError::NotSvid("leaf is a CA certificate"));
}

#[test]
fn two_uri_sans_are_refused() {
    let ca = TestCa::new("example.org");
    let chain = ca.craft_leaf(&id(), |p| {
        p.subject_alt_names
            .push(uri("spiffe://example.org/ns/shop/sa/admin"));
    });
    let err = assert_refused(&ca, &chain, "not_svid");
    assert_eq!(err, VerifyError::NotSvid("more than one URI SAN"));
}

#[test]
fn a_leaf_without_extended_key_usage_is_refused() {
    let ca = TestCa::new("example.org");
    let chain = ca.craft_leaf(&id(), |p| p.extended_key_usages.clear());
    assert_refused(&ca, &chain, "bad_usage");
}

#[test]
fn a_leaf_for_one_direction_only_is_refused_in_both() {
    let ca = TestCa::new("example.org");
    for eku in [
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ] {
        let chain = ca.craft_leaf(&id(), |p| p.extended_key_usages = vec![eku.clone()]);
        assert_refused(&ca, &chain, "bad_usage");
    }
}

#[test]
fn a_leaf_with_the_wrong_key_usage_is_refused() {
    let ca = TestCa::new("example.org");
    let cases = [
        vec![KeyUsagePurpose::KeyEncipherment],
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ],
        vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign],
        vec![],
    ];
    for usages in cases {
        let chain = ca.craft_leaf(&id(), |p| p.key_usages = usages.clone());
        let err = assert_refused(&ca, &chain, "bad_usage");
        assert!(err.to_string().contains("leaf"), "{usages:?}: {err}");
    }
}

#[test]
fn a_ca_of_another_trust_domain_cannot_sign_for_ours() {
    let ca = TestCa::new("example.org");
    // Under our own root, so only the CA's trust domain is wrong.
    let chain = ca.craft_sub_ca_leaf(
        |p| p.subject_alt_names = vec![uri("spiffe://other.org")],
        &id(),
    );
    let err = assert_refused(&ca, &chain, "name_constraint");
    assert!(
        err.to_string().contains("trust domain other.org signed"),
        "{err}"
    );
}

#[test]
fn a_ca_whose_spiffe_id_has_a_path_is_refused() {
    let ca = TestCa::new("example.org");
    let chain = ca.craft_sub_ca_leaf(
        |p| p.subject_alt_names = vec![uri("spiffe://example.org/ns/shop")],
        &id(),
    );
    assert_refused(&ca, &chain, "name_constraint");
}

#[test]
fn a_ca_that_may_not_sign_crls_is_refused() {
    let ca = TestCa::new("example.org");
    let chain = ca.craft_sub_ca_leaf(|p| p.key_usages = vec![KeyUsagePurpose::KeyCertSign], &id());
    let err = assert_refused(&ca, &chain, "bad_usage");
    assert!(err.to_string().contains("CA"), "{err}");
}

#[test]
fn a_ca_without_a_spiffe_id_still_verifies() {
    // A CA from another PKI (or made by hand) names no trust domain, so it binds none; the
    // leaf's trust domain is still checked against the bundle's.
    let ca = TestCa::new("example.org");
    let chain = ca.craft_sub_ca_leaf(|p| p.subject_alt_names.clear(), &id());
    assert_eq!(verify(&ca, &chain, Usage::Client).unwrap().id, id());
}

/// DER of an RFC 5280 NameConstraints with one permitted URI subtree (`base` < 100 bytes).
fn permitted_uri(base: &str) -> Vec<u8> {
    let tlv = |tag: u8, body: &[u8]| [&[tag, body.len() as u8][..], body].concat();
    let subtree = tlv(0x30, &tlv(0x86, base.as_bytes()));
    tlv(0x30, &tlv(0xa0, &subtree))
}

/// Why Ferrule's CAs carry no standard URI name constraint: rustls-webpki refuses every
/// certificate with a URI SAN below one, however well it matches. If this starts to pass,
/// webpki learned URI constraints and the CAs can carry `Permitted: URI:<td>`.
#[test]
fn webpki_refuses_any_svid_below_a_standard_uri_name_constraint() {
    let ca = TestCa::new("example.org");
    let chain = ca.craft_sub_ca_leaf(
        |p| {
            let mut nc =
                CustomExtension::from_oid_content(&[2, 5, 29, 30], permitted_uri("example.org"));
            nc.set_criticality(true);
            p.custom_extensions.push(nc);
        },
        &id(),
    );
    assert_refused(&ca, &chain, "name_constraint");
}

fn openssl_text(path: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(path)
        .output()
        .expect("openssl is installed by cargo xtask setup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// OpenSSL as an outside witness of what `ferrule ca init` writes: both online CA levels may
/// sign certificates and CRLs only, and name their trust domain.
#[test]
fn openssl_sees_the_ca_profile() {
    let ca = TestCa::new("example.org");
    for path in [ca.layout.intermediate_cert(), ca.layout.issuing_cert()] {
        let text = openssl_text(&path);
        let ku = text
            .split_once("X509v3 Key Usage: critical")
            .map(|(_, rest)| rest.lines().nth(1).unwrap_or_default().trim())
            .unwrap_or_else(|| panic!("{}: no critical key usage in\n{text}", path.display()));
        assert_eq!(ku, "Certificate Sign, CRL Sign", "{}", path.display());
        assert!(
            text.contains("URI:spiffe://example.org\n"),
            "{}: {text}",
            path.display()
        );
    }
}
