//! X.509-SVID verification: chain to a trust bundle (rustls-webpki), then the SPIFFE rules
//! (`profile`: key usages, the trust domain a CA vouches for).
//! Every failure has its own variant, because operators need the reason, not "bad certificate".

mod profile;

use std::time::{Duration, SystemTime};

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage, VerifiedPath};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::bundle::TrustBundle;
use crate::spiffe::SpiffeId;

/// Why a peer's certificate was not accepted. The `reason()` strings are stable metric labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no certificate presented")]
    NoCertificate,
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("certificate does not chain to a trusted root (unknown CA)")]
    UnknownCa,
    #[error("certificate expired")]
    Expired,
    #[error("certificate not yet valid")]
    NotYetValid,
    #[error("certificate revoked")]
    Revoked,
    #[error("certificate is not an X.509-SVID: {0}")]
    NotSvid(&'static str),
    #[error("peer is in trust domain {got:?}, expected {expected:?}")]
    WrongTrustDomain { expected: String, got: String },
    #[error("peer presented {got}, expected {expected}")]
    WrongId { expected: String, got: String },
    #[error("certificate not valid for this use: {0}")]
    BadUsage(String),
    #[error("a CA signed outside its trust domain: {0}")]
    NameConstraint(String),
    #[error("{id} is not a workload identity")]
    NotWorkload { id: String },
    #[error("trust bundle has no roots")]
    EmptyBundle,
}

impl VerifyError {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no_client_certificate",
            Self::Malformed(_) => "malformed",
            Self::NotSvid(_) => "not_svid",
            Self::UnknownCa | Self::EmptyBundle => "unknown_ca",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::WrongTrustDomain { .. } => "wrong_trust_domain",
            Self::WrongId { .. } => "wrong_spiffe_id",
            Self::BadUsage(_) => "bad_usage",
            Self::NameConstraint(_) => "name_constraint",
            Self::NotWorkload { .. } => "not_workload",
        }
    }
}

impl From<webpki::Error> for VerifyError {
    fn from(e: webpki::Error) -> Self {
        use webpki::Error as E;
        match e {
            E::CertExpired { .. } => Self::Expired,
            E::CertNotValidYet { .. } => Self::NotYetValid,
            E::UnknownIssuer | E::InvalidSignatureForPublicKey => Self::UnknownCa,
            E::CertRevoked => Self::Revoked,
            E::CaUsedAsEndEntity => Self::NotSvid("leaf is a CA certificate"),
            E::RequiredEkuNotFoundContext(_) => Self::BadUsage("missing extended key usage".into()),
            E::NameConstraintViolation => {
                Self::NameConstraint("a name constraint of the chain refuses the leaf".into())
            }
            other => Self::Malformed(other.to_string()),
        }
    }
}

/// Which side of a TLS connection the certificate authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// What a verified peer certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSvid {
    pub id: SpiffeId,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Facts read from a certificate without judging its trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub uri_sans: Vec<String>,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    pub key_type: String,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> Result<Self, VerifyError> {
        Self::of(&parse_x509(der)?)
    }

    fn of(cert: &X509Certificate<'_>) -> Result<Self, VerifyError> {
        let (is_ca, path_len) = match cert.basic_constraints() {
            Ok(Some(bc)) => (bc.value.ca, bc.value.path_len_constraint),
            Ok(None) => (false, None),
            Err(e) => return Err(VerifyError::Malformed(e.to_string())),
        };
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: hex_serial(cert.raw_serial()),
            not_before: to_system_time(cert.validity().not_before.timestamp()),
            not_after: to_system_time(cert.validity().not_after.timestamp()),
            uri_sans: uri_sans(cert),
            is_ca,
            path_len,
            key_type: key_type(cert),
        })
    }

    /// The single SPIFFE ID of an X.509-SVID.
    pub fn spiffe_id(&self) -> Result<SpiffeId, VerifyError> {
        match self.uri_sans.as_slice() {
            [uri] => {
                SpiffeId::parse(uri).map_err(|_| VerifyError::NotSvid("URI SAN is not a SPIFFE ID"))
            }
            [] => Err(VerifyError::NotSvid("no URI SAN")),
            _ => Err(VerifyError::NotSvid("more than one URI SAN")),
        }
    }
}

fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, VerifyError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(VerifyError::Malformed(
            "trailing data after certificate".into(),
        ));
    }
    Ok(cert)
}

pub(crate) fn hex_serial(raw: &[u8]) -> String {
    let trimmed = match raw.iter().position(|&b| b != 0) {
        Some(i) => &raw[i..],
        None => &raw[raw.len().saturating_sub(1)..],
    };
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_system_time(unix_seconds: i64) -> SystemTime {
    if unix_seconds >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix_seconds as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(unix_seconds.unsigned_abs())
    }
}

fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.extensions()
        .iter()
        .filter_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
            _ => None,
        })
        .flatten()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => "ECDSA P-256".into(),
            384 => "ECDSA P-384".into(),
            bits => format!("ECDSA {bits}-bit"),
        },
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(_) => "other".into(),
        Err(_) => "unparsable".into(),
    }
}

impl TrustBundle {
    /// Verifies `chain` (leaf first, then intermediates) as an X.509-SVID of this trust domain.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        now: SystemTime,
        usage: Usage,
    ) -> Result<VerifiedSvid, VerifyError> {
        let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::NoCertificate)?;
        let parsed = parse_x509(leaf)?;
        let info = CertInfo::of(&parsed)?;
        if info.is_ca {
            return Err(VerifyError::NotSvid("leaf is a CA certificate"));
        }
        let id = info.spiffe_id()?;
        // Before the chain: a certificate of another trust domain is that, whoever signed it
        // (the chain check would only say "unknown CA").
        if id.trust_domain_str() != self.trust_domain().as_str() {
            return Err(VerifyError::WrongTrustDomain {
                expected: self.trust_domain().to_string(),
                got: id.trust_domain_str().to_owned(),
            });
        }
        let end_entity =
            EndEntityCert::try_from(leaf).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        // "If present": webpki applies it to every certificate on the path, and CAs carry no
        // EKU. The leaf must have one, with both purposes: `profile::check_leaf`.
        let key_usage = match usage {
            Usage::Server => KeyUsage::server_auth(),
            Usage::Client => KeyUsage::client_auth(),
        };
        let now = UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let path = end_entity.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            self.anchors(),
            intermediates,
            now,
            key_usage,
            None,
            None,
        )?;
        // After the chain, so that a certificate from anywhere else is an unknown CA first.
        profile::check_leaf(&parsed)?;
        check_cas(&path, &id)?;
        let svid = VerifiedSvid {
            id,
            serial: info.serial,
            not_before: info.not_before,
            not_after: info.not_after,
        };
        self.revocations().check(&svid)?;
        Ok(svid)
    }
}

/// The CA certificates webpki chose (the roots are the bundle's own), against the profile.
fn check_cas(path: &VerifiedPath<'_>, leaf: &SpiffeId) -> Result<(), VerifyError> {
    for ca in path.intermediate_certificates() {
        profile::check_ca(&parse_x509(&ca.der())?, leaf)?;
    }
    Ok(())
}
