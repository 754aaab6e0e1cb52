//! The trust bundle in the SPIFFE Trust Domain and Bundle format: a JWK Set whose keys have
//! `"use": "x509-svid"`, the root certificate as the single `x5c` element, and the key parameters
//! of RFC 7518 §6 (`kty`, `crv`, `x`, `y` for EC; `n`, `e` for RSA; `crv`, `x` for Ed25519).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ferrule_identity::TrustBundle;
use serde_json::{Value, json};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::PublicError;

pub(super) fn to_json(
    bundle: &TrustBundle,
    sequence: u64,
    refresh_hint: Duration,
) -> Result<String, PublicError> {
    let keys = bundle
        .roots()
        .iter()
        .enumerate()
        .map(|(index, root)| jwk(root).map_err(|reason| PublicError::BundleRoot { index, reason }))
        .collect::<Result<Vec<_>, _>>()?;
    let set = json!({
        "keys": keys,
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": refresh_hint.as_secs(),
    });
    Ok(serde_json::to_string_pretty(&set).expect("a JSON value always serializes"))
}

fn jwk(root: &[u8]) -> Result<Value, String> {
    let (_, cert) = X509Certificate::from_der(root).map_err(|e| e.to_string())?;
    let mut key = key_parameters(cert.public_key())?;
    let fields = key.as_object_mut().expect("key parameters are an object");
    fields.insert("use".into(), "x509-svid".into());
    fields.insert("x5c".into(), json!([STANDARD.encode(root)]));
    Ok(key)
}

fn key_parameters(spki: &SubjectPublicKeyInfo<'_>) -> Result<Value, String> {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or("EC key without a named curve")?;
        let crv = if curve == OID_EC_P256 {
            "P-256"
        } else if curve == OID_NIST_EC_P384 {
            "P-384"
        } else if curve == OID_NIST_EC_P521 {
            "P-521"
        } else {
            return Err(format!("unsupported EC curve {curve}"));
        };
        // Uncompressed point: 0x04 || x || y, both coordinates at full width (RFC 7518 §6.2.1.2).
        let point = &spki.subject_public_key.data;
        let (x, y) = match point.split_first() {
            Some((0x04, xy)) if xy.len() % 2 == 0 => xy.split_at(xy.len() / 2),
            _ => return Err("EC key is not an uncompressed point".into()),
        };
        Ok(json!({ "kty": "EC", "crv": crv, "x": b64(x), "y": b64(y) }))
    } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err("malformed RSA key".into());
        };
        Ok(
            json!({ "kty": "RSA", "n": b64(unsigned(rsa.modulus)), "e": b64(unsigned(rsa.exponent)) }),
        )
    } else if *algorithm == OID_SIG_ED25519 {
        Ok(json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(&spki.subject_public_key.data) }))
    } else {
        Err(format!("unsupported key algorithm {algorithm}"))
    }
}

/// base64urlUInt wants the minimal big-endian octets: DER's sign octet goes.
fn unsigned(der_integer: &[u8]) -> &[u8] {
    let start = der_integer
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(der_integer.len().saturating_sub(1));
    &der_integer[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule_identity::testing::TestCa;

    fn decode(value: &Value) -> Vec<u8> {
        URL_SAFE_NO_PAD
            .decode(value.as_str().expect("a base64url string"))
            .expect("valid unpadded base64url")
    }

    #[test]
    fn bundle_is_a_spiffe_jwk_set_of_the_roots() {
        let test = TestCa::new("example.org");
        let bundle = test.ca.bundle();
        let text = to_json(bundle, 7, Duration::from_secs(300)).unwrap();
        let set: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(set["spiffe_sequence"], 7);
        assert_eq!(set["spiffe_refresh_hint"], 300);
        let keys = set["keys"].as_array().expect("keys array");
        assert_eq!(keys.len(), bundle.roots().len());

        let key = &keys[0];
        assert_eq!(key["use"], "x509-svid");
        assert_eq!(key["kty"], "EC");
        // `ferrule ca init` makes P-384 roots.
        assert_eq!(key["crv"], "P-384");
        let x5c = key["x5c"].as_array().expect("x5c array");
        assert_eq!(x5c.len(), 1, "x5c holds exactly the root");
        let der = STANDARD.decode(x5c[0].as_str().unwrap()).unwrap();
        assert_eq!(der, bundle.roots()[0].as_ref());

        let (_, root) = X509Certificate::from_der(&der).unwrap();
        let point = &root.public_key().subject_public_key.data;
        let (x, y) = (decode(&key["x"]), decode(&key["y"]));
        assert_eq!(
            (x.len(), y.len()),
            (48, 48),
            "P-384 coordinates at full width"
        );
        assert_eq!([&[0x04][..], &x, &y].concat(), point.to_vec());
        assert!(key.get("kid").is_none(), "X509-SVID JWKs carry no kid");
    }

    #[test]
    fn rsa_integers_lose_the_der_sign_octet() {
        assert_eq!(unsigned(&[0x00, 0x80, 0x01]), &[0x80, 0x01]);
        assert_eq!(unsigned(&[0x01, 0x00, 0x01]), &[0x01, 0x00, 0x01]);
        assert_eq!(unsigned(&[0x00]), &[0x00]);
    }
}
