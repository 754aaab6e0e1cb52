//! Certificate revocation lists for relying parties outside the mesh (`openssl verify
//! -crl_check`, a gateway's `ssl_crl`). The issuing CA's CRL is signed through the same
//! [`Signer`](crate::signer::Signer) as certificates, so an HSM-held key works unchanged; the
//! CAs above it sign theirs offline (`crate::ca::offline_crls`).

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, RevokedCertParams, SerialNumber,
    SigningKey,
};
use rustls_pki_types::CertificateDer;

use crate::ca::{CaError, IssuingCa};

/// RFC 5280 §4.1.2.2: serial numbers are at most 20 octets.
const MAX_SERIAL_OCTETS: usize = 20;

/// Why a certificate was revoked (the RFC 5280 §5.3.1 reason codes a mesh CA has a use for;
/// `certificateHold` and `removeFromCRL` are left out because revocation here is final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: [Self; 7] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    /// The kebab-case name used in the CLI, the store and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key-compromise",
            Self::CaCompromise => "ca-compromise",
            Self::AffiliationChanged => "affiliation-changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation-of-operation",
            Self::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    fn rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            Self::Unspecified => R::Unspecified,
            Self::KeyCompromise => R::KeyCompromise,
            Self::CaCompromise => R::CaCompromise,
            Self::AffiliationChanged => R::AffiliationChanged,
            Self::Superseded => R::Superseded,
            Self::CessationOfOperation => R::CessationOfOperation,
            Self::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown revocation reason {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for RevocationReason {
    type Err = UnknownReason;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// Hex serial number, as in `IssuedSvid::serial` and the certificate inventory.
    pub serial: String,
    pub revoked_at: SystemTime,
    /// `Unspecified` is written as no reason code at all (RFC 5280 §5.3.1).
    pub reason: RevocationReason,
}

/// A signed CRL (X.509 v2, with the CRL number and the issuing CA's Authority Key Identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    der: Vec<u8>,
    issuer: String,
    number: u64,
    this_update: SystemTime,
    next_update: SystemTime,
}

impl Crl {
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM text with an `X509 CRL` block, as OpenSSL and nginx read it.
    pub fn pem(&self) -> String {
        crate::pem_block("X509 CRL", &self.der)
    }

    /// The issuer's distinguished name, e.g. `O=Ferrule, CN=example.org Ferrule Issuing CA`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    /// As written in the CRL: whole seconds.
    pub fn this_update(&self) -> SystemTime {
        self.this_update
    }

    /// As written in the CRL: whole seconds. A new CRL must be published before then.
    pub fn next_update(&self) -> SystemTime {
        self.next_update
    }
}

impl IssuingCa {
    /// Signs a CRL listing `revoked`, numbered `number` (callers keep it increasing), valid from
    /// `this_update` until `next_update`. An empty `revoked` gives a valid, empty CRL.
    pub fn sign_crl(
        &self,
        revoked: &[RevokedSerial],
        number: u64,
        this_update: SystemTime,
        next_update: SystemTime,
    ) -> Result<Crl, CaError> {
        let issuing = self
            .chain()
            .first()
            .ok_or_else(|| CaError::BadRequest("empty issuing CA chain".into()))?;
        let window = CrlWindow {
            number,
            this_update,
            next_update,
        };
        sign_crl_by(self.issuer(), issuing, revoked, window)
    }
}

/// A CRL's number and validity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CrlWindow {
    pub number: u64,
    pub this_update: SystemTime,
    pub next_update: SystemTime,
}

/// Signs a CRL with any CA's key: the issuing CA's (through its signer) or an offline one's.
pub(crate) fn sign_crl_by(
    issuer: &Issuer<'_, impl SigningKey>,
    issuer_cert: &CertificateDer<'_>,
    revoked: &[RevokedSerial],
    window: CrlWindow,
) -> Result<Crl, CaError> {
    let (issuer_name, aki) = issuer_names(issuer_cert)?;
    let this_update = whole_seconds(window.this_update);
    let next_update = whole_seconds(window.next_update);
    if next_update <= this_update {
        return Err(CaError::BadRequest(
            "CRL next update must be after this update".into(),
        ));
    }
    let revoked_certs = revoked
        .iter()
        .map(|entry| {
            Ok(RevokedCertParams {
                serial_number: parse_serial(&entry.serial)?,
                revocation_time: whole_seconds(entry.revoked_at).into(),
                reason_code: Some(entry.reason.rcgen()),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, CaError>>()?;
    let params = CertificateRevocationListParams {
        this_update: this_update.into(),
        next_update: next_update.into(),
        crl_number: SerialNumber::from(window.number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: aki,
    };
    let crl = params.signed_by(issuer)?;
    Ok(Crl {
        der: crl.der().to_vec(),
        issuer: issuer_name,
        number: window.number,
        this_update,
        next_update,
    })
}

/// The CRL issuer's subject (as the CRL names it) and the Authority Key Identifier, which must
/// equal the issuer certificate's Subject Key Identifier whatever method produced it (a CA created
/// elsewhere may use SHA-1); rcgen's SHA-256 truncation is only the fallback.
fn issuer_names(issuer: &CertificateDer<'_>) -> Result<(String, KeyIdMethod), CaError> {
    use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
    let (_, cert) = X509Certificate::from_der(issuer)
        .map_err(|e| CaError::BadRequest(format!("CRL issuer certificate: {e}")))?;
    let ski = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    let aki = ski.map_or(KeyIdMethod::Sha256, KeyIdMethod::PreSpecified);
    Ok((cert.subject().to_string(), aki))
}

fn parse_serial(hex_serial: &str) -> Result<SerialNumber, CaError> {
    let bad = |why: &str| CaError::BadRequest(format!("serial {hex_serial:?}: {why}"));
    let digits = hex_serial.trim();
    let padded;
    let even = if digits.len() % 2 == 1 {
        padded = format!("0{digits}");
        &padded
    } else {
        digits
    };
    let bytes = hex::decode(even).map_err(|_| bad("not hexadecimal"))?;
    let significant = match bytes.iter().position(|&b| b != 0) {
        Some(first) => &bytes[first..],
        None => return Err(bad("zero or empty")),
    };
    // One more octet is allowed for the sign byte DER adds before a high first bit.
    let limit = MAX_SERIAL_OCTETS - usize::from(significant[0] & 0x80 != 0);
    if significant.len() > limit {
        return Err(bad("longer than 20 octets"));
    }
    Ok(SerialNumber::from_slice(significant))
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(since) => UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_parse_like_the_inventory_writes_them() {
        let s = parse_serial("0a1b").unwrap();
        assert_eq!(s.as_ref(), &[0x0a, 0x1b]);
        assert_eq!(parse_serial("A1B").unwrap().as_ref(), &[0x0a, 0x1b]);
        assert_eq!(parse_serial("00ff").unwrap().as_ref(), &[0xff]);
        for bad in ["", "00", "xyz", &"7f".repeat(21), &"80".repeat(20)] {
            assert!(parse_serial(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_serial(&"7f".repeat(20)).is_ok());
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for reason in RevocationReason::ALL {
            assert_eq!(reason.as_str().parse::<RevocationReason>(), Ok(reason));
        }
        assert!("certificate-hold".parse::<RevocationReason>().is_err());
    }
}
