//! The X.509-SVID profile beyond what rustls-webpki checks: key usages, and which trust domain a
//! CA may vouch for.
//!
//! Trust-domain binding instead of a URI name constraint: a CA certificate that carries a
//! SPIFFE ID (`spiffe://<td>`, what every Ferrule CA has carried since the first version) vouches
//! only for that trust domain, so a certificate below it in another trust domain is refused.
//! That is what a permitted URI subtree for the trust domain would say. The standard
//! nameConstraints extension cannot carry it: rustls-webpki (since 0.103.12, RUSTSEC-2026-0098)
//! refuses every certificate with a URI SAN below a URI name constraint, so the whole mesh would
//! stop verifying (the SPIFFE X.509-SVID standard, section 4.2, warns of exactly this).

use x509_parser::prelude::{GeneralName, X509Certificate};

use super::VerifyError;
use crate::spiffe::SpiffeId;

/// A leaf X.509-SVID as the mesh issues them: digitalSignature and no CA key usage, and an EKU
/// with serverAuth and clientAuth (every mesh certificate is used both ways).
pub(super) fn check_leaf(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    let bad = |what: &str| VerifyError::BadUsage(format!("leaf {what}"));
    let ku = cert
        .key_usage()
        .map_err(|e| VerifyError::Malformed(e.to_string()))?
        .ok_or_else(|| bad("has no key usage"))?
        .value;
    if !ku.digital_signature() {
        return Err(bad("key usage lacks digitalSignature"));
    }
    if ku.key_cert_sign() || ku.crl_sign() {
        return Err(bad("key usage allows signing certificates or CRLs"));
    }
    let eku = cert
        .extended_key_usage()
        .map_err(|e| VerifyError::Malformed(e.to_string()))?
        .ok_or_else(|| bad("has no extended key usage"))?
        .value;
    if !(eku.server_auth && eku.client_auth) {
        return Err(bad("extended key usage lacks serverAuth or clientAuth"));
    }
    Ok(())
}

/// A CA certificate on the verified path of `leaf`: it may sign certificates and CRLs, and if
/// it names a trust domain, it is the leaf's.
pub(super) fn check_ca(cert: &X509Certificate<'_>, leaf: &SpiffeId) -> Result<(), VerifyError> {
    let subject = cert.subject();
    let ku = cert
        .key_usage()
        .map_err(|e| VerifyError::Malformed(e.to_string()))?
        .map(|ku| ku.value);
    if !ku.is_some_and(|ku| ku.key_cert_sign() && ku.crl_sign()) {
        return Err(VerifyError::BadUsage(format!(
            "CA {subject} lacks keyCertSign or cRLSign"
        )));
    }
    let domains = ca_trust_domains(cert)?;
    if domains.is_empty() || domains.contains(&leaf.trust_domain_str()) {
        return Ok(());
    }
    Err(VerifyError::NameConstraint(format!(
        "CA {subject} of trust domain {} signed {leaf}",
        domains.join(", ")
    )))
}

/// The trust domains of a CA's SPIFFE IDs. SPIFFE (X.509-SVID 3.2): a signing certificate's
/// SPIFFE ID has no path.
fn ca_trust_domains<'a>(cert: &'a X509Certificate<'_>) -> Result<Vec<&'a str>, VerifyError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let uris = san
        .iter()
        .flat_map(|san| &san.value.general_names)
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let mut domains = Vec::new();
    for uri in uris.filter(|uri| uri.starts_with("spiffe://")) {
        let domain = &uri["spiffe://".len()..];
        if domain.is_empty() || domain.contains('/') {
            return Err(VerifyError::NameConstraint(format!(
                "CA {} has SPIFFE ID {uri:?}, not a bare trust domain",
                cert.subject()
            )));
        }
        domains.push(domain);
    }
    Ok(domains)
}
