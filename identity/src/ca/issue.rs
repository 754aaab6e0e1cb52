//! Issuing X.509-SVIDs: the CA takes only a public key and an identity and decides every field.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::CertificateDer;

use super::CaError;
use crate::bundle::TrustBundle;
use crate::signer::{RcgenSigner, Signer};
use crate::spiffe::SpiffeId;
use crate::verify::{CertInfo, Usage};

/// Leaves start a minute in the past so that small clock skew between nodes does not reject them.
const BACKDATE: Duration = Duration::from_secs(60);

/// What to put in a new X.509-SVID.
#[derive(Debug, Clone)]
pub struct SvidRequest<'a> {
    pub id: &'a SpiffeId,
    /// DER SubjectPublicKeyInfo of the subject's key.
    pub public_key_spki: &'a [u8],
    pub ttl: Duration,
    /// Extra SANs for non-SPIFFE clients (the control plane's own serving certificate).
    pub dns_names: &'a [String],
    pub ip_addresses: &'a [IpAddr],
}

/// A signed X.509-SVID with the CA certificates a peer needs to build the path to a root.
#[derive(Debug, Clone)]
pub struct IssuedSvid {
    pub leaf: CertificateDer<'static>,
    /// Issuing CA first, then intermediates; roots are not included.
    pub chain: Vec<CertificateDer<'static>>,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl IssuedSvid {
    /// Leaf followed by the CA chain, as a TLS peer sends it.
    pub fn full_chain(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.leaf.clone())
            .chain(self.chain.iter().cloned())
            .collect()
    }

    pub fn full_chain_pem(&self) -> String {
        crate::pem_encode_certs(&self.full_chain())
    }
}

/// The online issuing CA. Cheap to clone; signing goes through the [`Signer`].
#[derive(Clone)]
pub struct IssuingCa {
    issuer: Arc<Issuer<'static, RcgenSigner>>,
    chain: Arc<[CertificateDer<'static>]>,
    not_after: SystemTime,
    bundle: Arc<TrustBundle>,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuingCa")
            .field("trust_domain", self.bundle.trust_domain())
            .finish_non_exhaustive()
    }
}

impl IssuingCa {
    /// `chain` is the issuing CA certificate followed by its intermediates. Fails unless the
    /// signer's key matches the certificate and a test leaf verifies against `bundle`.
    pub fn new(
        signer: Arc<dyn Signer>,
        chain: Vec<CertificateDer<'static>>,
        bundle: TrustBundle,
    ) -> Result<Self, CaError> {
        let issuing = chain
            .first()
            .ok_or_else(|| CaError::BadRequest("empty issuing CA chain".into()))?;
        let info = CertInfo::parse(issuing).map_err(CaError::Chain)?;
        if !info.is_ca {
            return Err(CaError::BadRequest(
                "issuing certificate is not a CA".into(),
            ));
        }
        if spki_raw_key(issuing)? != signer.public_key_raw() {
            return Err(CaError::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(issuing, RcgenSigner(signer))?;
        let ca = Self {
            issuer: Arc::new(issuer),
            chain: chain.into(),
            not_after: info.not_after,
            bundle: Arc::new(bundle),
        };
        ca.self_test()?;
        Ok(ca)
    }

    fn self_test(&self) -> Result<(), CaError> {
        let id = SpiffeId::control_plane(self.bundle.trust_domain());
        let (svid, _key) = self.issue_with_new_key(&id, Duration::from_secs(300), &[], &[])?;
        self.bundle
            .verify(&svid.full_chain(), SystemTime::now(), Usage::Client)
            .map_err(CaError::Chain)?;
        Ok(())
    }

    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The issuer that signs through the [`Signer`] (certificates here, CRLs in `crate::crl`).
    pub(crate) fn issuer(&self) -> &Issuer<'static, RcgenSigner> {
        &self.issuer
    }

    pub fn issue(&self, req: &SvidRequest<'_>) -> Result<IssuedSvid, CaError> {
        let public_key = SubjectPublicKeyInfo::from_der(req.public_key_spki)
            .map_err(|e| CaError::BadRequest(format!("public key: {e}")))?;
        let now = SystemTime::now();
        let not_before = now - BACKDATE;
        let not_after = (now + req.ttl).min(self.not_after);
        let params = leaf_params(req, not_before, not_after)?;
        let cert = params.signed_by(&public_key, &self.issuer)?;
        let serial = crate::verify::hex_serial(
            params
                .serial_number
                .as_ref()
                .map(|s| s.as_ref())
                .unwrap_or(&[]),
        );
        Ok(IssuedSvid {
            leaf: cert.der().clone(),
            chain: self.chain.to_vec(),
            serial,
            not_before,
            not_after,
        })
    }

    /// Test certificates with any validity window: expired or not-yet-valid ones for the tests
    /// that check every handshake failure reason. Returns the chain and the key as PEM.
    #[cfg(any(test, feature = "testing"))]
    pub fn issue_with_validity(
        &self,
        id: &SpiffeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<(String, String), CaError> {
        let key = crate::csr::generate_workload_key()?;
        let req = SvidRequest {
            id,
            public_key_spki: &rcgen::PublicKeyData::subject_public_key_info(&key),
            ttl: Duration::ZERO,
            dns_names: &[],
            ip_addresses: &[],
        };
        let params = leaf_params(&req, not_before, not_after)?;
        let public_key = SubjectPublicKeyInfo::from_der(req.public_key_spki)
            .map_err(|e| CaError::BadRequest(format!("public key: {e}")))?;
        let cert = params.signed_by(&public_key, &self.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        Ok((crate::pem_encode_certs(&chain), key.serialize_pem()))
    }

    /// Issues an SVID for a key generated here, in memory (the control plane's own identity).
    pub fn issue_with_new_key(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        dns_names: &[String],
        ip_addresses: &[IpAddr],
    ) -> Result<(IssuedSvid, KeyPair), CaError> {
        let key = crate::csr::generate_workload_key()?;
        let svid = self.issue(&SvidRequest {
            id,
            public_key_spki: &rcgen::PublicKeyData::subject_public_key_info(&key),
            ttl,
            dns_names,
            ip_addresses,
        })?;
        Ok((svid, key))
    }
}

pub(crate) fn leaf_params(
    req: &SvidRequest<'_>,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ferrule");
    params.distinguished_name = dn;
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = subject_alt_names(req)?;
    Ok(params)
}

fn subject_alt_names(req: &SvidRequest<'_>) -> Result<Vec<SanType>, CaError> {
    let ia5 = |s: &str| {
        s.try_into()
            .map_err(|e: rcgen::Error| CaError::BadRequest(format!("SAN {s:?}: {e}")))
    };
    let mut sans = vec![SanType::URI(ia5(req.id.as_str())?)];
    for dns in req.dns_names {
        sans.push(SanType::DnsName(ia5(dns)?));
    }
    sans.extend(req.ip_addresses.iter().copied().map(SanType::IpAddress));
    Ok(sans)
}

/// A positive 127-bit random serial (RFC 5280: at most 20 octets, unpredictable).
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

pub(super) fn spki_raw_key(cert: &CertificateDer<'_>) -> Result<Vec<u8>, CaError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| CaError::BadRequest(format!("issuing certificate: {e}")))?;
    Ok(parsed.public_key().subject_public_key.data.to_vec())
}
