//! Issued leaves follow the X.509-SVID standard and verify with rustls-webpki and with OpenSSL.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrule_identity::ca::{self, CaInitOptions, CaLayout, IssuingCa, SvidRequest, read_cert_pem};
use ferrule_identity::csr::{build_csr, generate_workload_key, verify_csr};
use ferrule_identity::signer::InMemorySigner;
use ferrule_identity::testing::TestCa;
use ferrule_identity::{SpiffeId, TrustBundle, TrustDomain, Usage, VerifyError};
use x509_parser::prelude::*;

fn new_ca(td: &str) -> (tempfile::TempDir, CaLayout, IssuingCa) {
    let test = TestCa::new(td);
    (test.dir, test.layout, test.ca)
}

fn issue(ca: &IssuingCa, id: &str, ttl: Duration) -> ca::IssuedSvid {
    let key = generate_workload_key().unwrap();
    let id = SpiffeId::parse(id).unwrap();
    let csr = verify_csr(&build_csr(&key, &id).unwrap()).unwrap();
    ca.issue(&SvidRequest {
        id: &id,
        public_key_spki: &csr.public_key_spki,
        ttl,
        dns_names: &[],
        ip_addresses: &[],
    })
    .unwrap()
}

#[test]
fn leaf_follows_x509_svid_standard() {
    let (_dir, _layout, ca) = new_ca("example.org");
    let svid = issue(
        &ca,
        "spiffe://example.org/ns/shop/sa/web",
        Duration::from_secs(3600),
    );
    let (_, cert) = X509Certificate::from_der(&svid.leaf).unwrap();

    let san = cert
        .subject_alternative_name()
        .unwrap()
        .expect("SAN present");
    let uris: Vec<_> = san
        .value
        .general_names
        .iter()
        .filter(|n| matches!(n, GeneralName::URI(_)))
        .collect();
    assert_eq!(uris.len(), 1, "exactly one URI SAN, got {uris:?}");
    assert_eq!(
        uris[0],
        &GeneralName::URI("spiffe://example.org/ns/shop/sa/web")
    );

    let bc = cert
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints present");
    assert!(!bc.value.ca, "leaf must have cA=false");

    let ku = cert.key_usage().unwrap().expect("keyUsage present");
    assert!(ku.critical, "keyUsage must be critical");
    assert!(ku.value.digital_signature(), "digitalSignature set");
    assert_eq!(
        ku.value.flags, 1,
        "digitalSignature only, got {:?}",
        ku.value
    );

    let eku = cert.extended_key_usage().unwrap().expect("EKU present");
    assert!(eku.value.server_auth && eku.value.client_auth);

    let lifetime = svid.not_after.duration_since(svid.not_before).unwrap();
    assert!(
        lifetime <= Duration::from_secs(3600 + 120),
        "lifetime {lifetime:?}"
    );
}

#[test]
fn leaf_verifies_with_webpki_and_openssl() {
    let (dir, layout, ca) = new_ca("example.org");
    let svid = issue(
        &ca,
        "spiffe://example.org/ns/shop/sa/web",
        Duration::from_secs(3600),
    );
    let verified = ca
        .bundle()
        .verify(&svid.full_chain(), SystemTime::now(), Usage::Client)
        .unwrap();
    assert_eq!(verified.id.as_str(), "spiffe://example.org/ns/shop/sa/web");
    assert_eq!(verified.serial, svid.serial);

    let leaf = dir.path().join("leaf.pem");
    std::fs::write(
        &leaf,
        ferrule_identity::pem_encode_certs(std::slice::from_ref(&svid.leaf)),
    )
    .unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(layout.bundle())
        .arg("-untrusted")
        .arg(layout.chain())
        .arg(&leaf)
        .output()
        .expect("openssl is installed by cargo xtask setup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(": OK"),
        "openssl verify failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn other_ca_and_other_trust_domain_are_refused() {
    let (_d1, _l1, ca) = new_ca("example.org");
    let (_d2, _l2, other_ca) = new_ca("example.org");
    let foreign = issue(
        &other_ca,
        "spiffe://example.org/ns/a/sa/b",
        Duration::from_secs(600),
    );
    assert_eq!(
        ca.bundle()
            .verify(&foreign.full_chain(), SystemTime::now(), Usage::Client),
        Err(VerifyError::UnknownCa)
    );
    // Same roots, but the bundle is for another trust domain.
    let other_td = TrustBundle::new(
        TrustDomain::new("other.org").unwrap(),
        ca.bundle().roots().to_vec(),
    )
    .unwrap();
    let svid = issue(
        &ca,
        "spiffe://example.org/ns/a/sa/b",
        Duration::from_secs(600),
    );
    assert!(matches!(
        other_td.verify(&svid.full_chain(), SystemTime::now(), Usage::Client),
        Err(VerifyError::WrongTrustDomain { .. })
    ));
}

#[test]
fn expiry_and_not_yet_valid_have_their_own_reasons() {
    let (_d, _l, ca) = new_ca("example.org");
    let svid = issue(
        &ca,
        "spiffe://example.org/ns/a/sa/b",
        Duration::from_secs(600),
    );
    let later = SystemTime::now() + Duration::from_secs(3600);
    let earlier = SystemTime::now() - Duration::from_secs(3600);
    let bundle = ca.bundle();
    assert_eq!(
        bundle.verify(&svid.full_chain(), later, Usage::Server),
        Err(VerifyError::Expired)
    );
    assert_eq!(
        bundle.verify(&svid.full_chain(), earlier, Usage::Server),
        Err(VerifyError::NotYetValid)
    );
    assert_eq!(
        bundle.verify(&[], SystemTime::now(), Usage::Server),
        Err(VerifyError::NoCertificate)
    );
}

#[test]
fn init_refuses_to_overwrite_and_chain_is_layered() {
    let (_dir, layout, _ca) = new_ca("example.org");
    let again = ca::init(
        &layout,
        &CaInitOptions::new(TrustDomain::new("example.org").unwrap()),
    );
    assert!(
        matches!(again, Err(ca::CaError::Exists { .. })),
        "{again:?}"
    );

    let chain = read_cert_pem(&layout.chain()).unwrap();
    let info: Vec<_> = chain
        .iter()
        .map(|c| ferrule_identity::CertInfo::parse(c).unwrap())
        .collect();
    assert!(
        info[0].is_ca && info[0].path_len == Some(0),
        "issuing CA: {:?}",
        info[0]
    );
    assert!(
        info[1].is_ca && info[1].path_len == Some(1),
        "intermediate: {:?}",
        info[1]
    );
    assert_eq!(info[0].issuer, info[1].subject);
    let root = &read_cert_pem(&layout.root_cert()).unwrap()[0];
    let root = ferrule_identity::CertInfo::parse(root).unwrap();
    assert_eq!(info[1].issuer, root.subject);
    let ten_years = Duration::from_secs(3650 * 24 * 3600);
    assert!(root.not_after.duration_since(root.not_before).unwrap() >= ten_years);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(layout.issuing_key())
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "keys are private");
}

#[test]
fn issuing_ca_rejects_a_key_that_is_not_its_own() {
    let (_d, layout, _ca) = new_ca("example.org");
    let wrong = Arc::new(InMemorySigner::from_pkcs8_file(&layout.intermediate_key()).unwrap());
    let bundle = TrustBundle::new(
        TrustDomain::new("example.org").unwrap(),
        read_cert_pem(&layout.bundle()).unwrap(),
    )
    .unwrap();
    let err = IssuingCa::new(wrong, read_cert_pem(&layout.chain()).unwrap(), bundle).unwrap_err();
    assert!(matches!(err, ca::CaError::KeyMismatch), "{err}");
}
