//! CRLs signed by the issuing CA are accepted by OpenSSL's CRL check and carry what RFC 5280
//! requires (issuer, number, next update, Authority Key Identifier).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrule_identity::ca::{CaError, IssuedSvid, IssuingCa};
use ferrule_identity::testing::TestCa;
use ferrule_identity::{Crl, RevocationReason, RevokedSerial, SpiffeId};
use x509_parser::prelude::*;

const HOUR: Duration = Duration::from_secs(3600);

fn issue(ca: &IssuingCa, id: &str) -> IssuedSvid {
    let id = SpiffeId::parse(id).unwrap();
    ca.issue_with_new_key(&id, HOUR, &[], &[]).unwrap().0
}

fn revoked(serial: &str, reason: RevocationReason) -> RevokedSerial {
    RevokedSerial {
        serial: serial.to_owned(),
        revoked_at: SystemTime::now() - Duration::from_secs(5),
        reason,
    }
}

fn sign(ca: &IssuingCa, entries: &[RevokedSerial], number: u64) -> Crl {
    let now = SystemTime::now();
    ca.sign_crl(entries, number, now, now + 24 * HOUR).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `openssl verify -crl_check -x509_strict` of `leaf` against the test CA; (success, output).
fn openssl_verify(test: &TestCa, crl: &Crl, leaf: &IssuedSvid) -> (bool, String) {
    let dir = test.dir.path();
    let crl_path = write(dir, "crl.pem", &crl.pem());
    let leaf_path = write(
        dir,
        "leaf.pem",
        &ferrule_identity::pem_encode_certs(std::slice::from_ref(&leaf.leaf)),
    );
    openssl(test, &crl_path, &leaf_path)
}

fn openssl(test: &TestCa, crl: &Path, leaf: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["verify", "-crl_check", "-x509_strict", "-CAfile"])
        .arg(test.layout.bundle())
        .arg("-untrusted")
        .arg(test.layout.chain())
        .arg("-CRLfile")
        .arg(crl)
        .arg(leaf)
        .output()
        .expect("openssl is installed by cargo xtask setup");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn issuing_cert(ca: &IssuingCa) -> X509Certificate<'_> {
    X509Certificate::from_der(&ca.chain()[0]).unwrap().1
}

fn subject_key_id(ca: &IssuingCa) -> Vec<u8> {
    issuing_cert(ca)
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .expect("issuing CA has a subject key identifier")
}

#[test]
fn openssl_rejects_the_revoked_leaf_and_accepts_the_other() {
    let test = TestCa::new("example.org");
    let revoked_leaf = issue(&test.ca, "spiffe://example.org/ns/shop/sa/web");
    let good_leaf = issue(&test.ca, "spiffe://example.org/ns/shop/sa/db");
    let crl = sign(
        &test.ca,
        &[revoked(
            &revoked_leaf.serial,
            RevocationReason::KeyCompromise,
        )],
        1,
    );

    let (ok, out) = openssl_verify(&test, &crl, &revoked_leaf);
    assert!(
        !ok && out.contains("certificate revoked"),
        "expected openssl to report the listed leaf as revoked, got: {out}"
    );
    let (ok, out) = openssl_verify(&test, &crl, &good_leaf);
    assert!(
        ok && out.contains(": OK"),
        "expected the unlisted leaf to verify with -crl_check, got: {out}"
    );
}

#[test]
fn empty_crl_is_accepted_by_openssl() {
    let test = TestCa::new("example.org");
    let leaf = issue(&test.ca, "spiffe://example.org/ns/shop/sa/web");
    let crl = sign(&test.ca, &[], 1);
    let (ok, out) = openssl_verify(&test, &crl, &leaf);
    assert!(
        ok && out.contains(": OK"),
        "expected an empty CRL to satisfy -crl_check, got: {out}"
    );
    let (_, parsed) = parse_x509_crl(crl.der()).unwrap();
    assert_eq!(parsed.iter_revoked_certificates().count(), 0);
}

#[test]
fn openssl_refuses_a_crl_signed_by_another_key() {
    let test = TestCa::new("example.org");
    let leaf = issue(&test.ca, "spiffe://example.org/ns/shop/sa/web");
    // Issuer name and key identifier of the real issuing CA, signature by some other key: only
    // the signature tells them apart, so this fails only if OpenSSL really checks it.
    let impostor_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let impostor = rcgen::Issuer::from_ca_cert_der(&test.ca.chain()[0], impostor_key).unwrap();
    let now = SystemTime::now();
    let forged = rcgen::CertificateRevocationListParams {
        this_update: now.into(),
        next_update: (now + HOUR).into(),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: rcgen::KeyIdMethod::PreSpecified(subject_key_id(&test.ca)),
    }
    .signed_by(&impostor)
    .unwrap();
    let dir = test.dir.path();
    let crl_path = write(dir, "forged.pem", &forged.pem().unwrap());
    let leaf_path = write(
        dir,
        "leaf.pem",
        &ferrule_identity::pem_encode_certs(std::slice::from_ref(&leaf.leaf)),
    );
    let out = openssl(&test, &crl_path, &leaf_path);
    assert!(
        !out.0 && out.1.contains("CRL signature failure"),
        "expected openssl to refuse a CRL signed by another key, got: {}",
        out.1
    );
}

#[test]
fn crl_fields_parse_back() {
    let test = TestCa::new("example.org");
    let leaf = issue(&test.ca, "spiffe://example.org/ns/shop/sa/web");
    let other = issue(&test.ca, "spiffe://example.org/ns/shop/sa/db");
    let this_update = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let next_update = this_update + 6 * HOUR + Duration::from_millis(700);
    let crl = test
        .ca
        .sign_crl(
            &[
                revoked(&leaf.serial, RevocationReason::Superseded),
                revoked(&other.serial, RevocationReason::Unspecified),
            ],
            42,
            this_update,
            next_update,
        )
        .unwrap();

    assert_eq!(crl.number(), 42);
    assert_eq!(crl.this_update(), this_update);
    assert_eq!(
        crl.next_update(),
        this_update + 6 * HOUR,
        "next update is kept in whole seconds, as encoded"
    );
    assert!(crl.pem().starts_with("-----BEGIN X509 CRL-----"));

    let (rest, parsed) = parse_x509_crl(crl.der()).unwrap();
    assert!(rest.is_empty());
    let issuing = issuing_cert(&test.ca);
    assert_eq!(
        parsed.issuer().as_raw(),
        issuing.subject().as_raw(),
        "CRL issuer {} vs issuing CA subject {}",
        parsed.issuer(),
        issuing.subject()
    );
    assert_eq!(parsed.version(), Some(X509Version::V2));
    assert_eq!(
        parsed.crl_number().map(|n| n.to_string()).as_deref(),
        Some("42")
    );
    assert_eq!(parsed.last_update().timestamp(), 1_900_000_000);
    assert_eq!(
        parsed.next_update().map(|t| t.timestamp()),
        Some(1_900_000_000 + 6 * 3600)
    );

    let ski = subject_key_id(&test.ca);
    let aki = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("CRL has an authority key identifier");
    assert_eq!(aki, ski, "CRL AKI must equal the issuing CA's SKI");

    let entries: Vec<_> = parsed
        .iter_revoked_certificates()
        .map(|r| (hex_of(r.raw_serial()), r.reason_code().map(|(_, c)| c)))
        .collect();
    assert_eq!(
        entries,
        vec![
            (leaf.serial.clone(), Some(ReasonCode::Superseded)),
            // RFC 5280 §5.3.1: no reason code rather than `unspecified`.
            (other.serial.clone(), None),
        ]
    );
}

#[test]
fn bad_requests_are_refused() {
    let test = TestCa::new("example.org");
    let now = SystemTime::now();
    let err = test.ca.sign_crl(&[], 1, now, now).unwrap_err();
    assert!(matches!(err, CaError::BadRequest(_)), "{err}");
    let err = test
        .ca
        .sign_crl(
            &[revoked("not-hex", RevocationReason::KeyCompromise)],
            1,
            now,
            now + HOUR,
        )
        .unwrap_err();
    assert!(
        matches!(&err, CaError::BadRequest(m) if m.contains("not-hex")),
        "{err}"
    );
}

/// The inventory's spelling: lowercase hex without leading zero octets.
fn hex_of(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    raw[start..].iter().map(|b| format!("{b:02x}")).collect()
}
