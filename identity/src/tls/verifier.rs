//! rustls verifiers that accept X.509-SVIDs of one trust domain (client side: of exactly the
//! expected server identity) and keep the typed failure reason inside the rustls error.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::bundle::SharedBundle;
use crate::spiffe::{IdKind, SpiffeId};
use crate::verify::{Usage, VerifiedSvid, VerifyError};

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

fn system_time(now: UnixTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs())
}

/// Wraps a verification failure so rustls sends the matching alert and callers can get the
/// reason back with [`verify_error_of`].
fn to_rustls(err: VerifyError) -> rustls::Error {
    let cert_error = match err {
        VerifyError::Expired => CertificateError::Expired,
        VerifyError::NotYetValid => CertificateError::NotValidYet,
        VerifyError::UnknownCa => CertificateError::UnknownIssuer,
        VerifyError::Revoked => CertificateError::Revoked,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert_error)
}

/// The typed reason behind a handshake failure, when a certificate caused it.
pub fn verify_error_of(err: &rustls::Error) -> Option<VerifyError> {
    match err {
        rustls::Error::InvalidCertificate(cert_error) => Some(match cert_error {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                VerifyError::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                VerifyError::NotYetValid
            }
            CertificateError::UnknownIssuer => VerifyError::UnknownCa,
            CertificateError::Revoked => VerifyError::Revoked,
            CertificateError::Other(OtherError(inner)) => inner
                .downcast_ref::<VerifyError>()
                .cloned()
                .unwrap_or_else(|| VerifyError::Malformed(inner.to_string())),
            other => VerifyError::Malformed(format!("{other:?}")),
        }),
        rustls::Error::NoCertificatesPresented => Some(VerifyError::NoCertificate),
        _ => None,
    }
}

/// Server side: accepts client X.509-SVIDs of the bundle's trust domain.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    bundle: SharedBundle,
    mandatory: bool,
    workloads_only: bool,
}

impl SpiffeClientVerifier {
    /// Client certificates required, of any identity kind (the control plane's clients are
    /// nodes and administrators).
    pub fn required(bundle: SharedBundle) -> Arc<Self> {
        Arc::new(Self {
            bundle,
            mandatory: true,
            workloads_only: false,
        })
    }

    /// Client certificates required, and only workload identities (`ns/<ns>/sa/<sa>`): the HBONE
    /// server, where a tunnel speaks for a workload and a node or admin key must not open one.
    pub fn workloads(bundle: SharedBundle) -> Arc<Self> {
        Arc::new(Self {
            bundle,
            mandatory: true,
            workloads_only: true,
        })
    }

    /// Client certificates verified when presented; a handshake without one succeeds, and the
    /// application must then authorize by other means (the single-use join token).
    pub fn optional(bundle: SharedBundle) -> Arc<Self> {
        Arc::new(Self {
            bundle,
            mandatory: false,
            workloads_only: false,
        })
    }

    fn check_kind(&self, svid: VerifiedSvid) -> Result<VerifiedSvid, VerifyError> {
        match svid.id.kind() {
            IdKind::Workload { .. } => Ok(svid),
            _ if !self.workloads_only => Ok(svid),
            _ => Err(VerifyError::NotWorkload {
                id: svid.id.to_string(),
            }),
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let chain: Vec<_> = std::iter::once(end_entity.clone())
            .chain(intermediates.iter().cloned())
            .collect();
        self.bundle
            .get()
            .verify(&chain, system_time(now), Usage::Client)
            .and_then(|svid| self.check_kind(svid))
            .map(|_| ClientCertVerified::assertion())
            .map_err(to_rustls)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// Which server identity a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedServer {
    /// Exactly this SPIFFE ID (mesh traffic: the ID the control plane says the destination has).
    Exact(SpiffeId),
}

/// Client side: accepts only an X.509-SVID with the expected SPIFFE ID.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    bundle: SharedBundle,
    expected: ExpectedServer,
}

impl SpiffeServerVerifier {
    pub fn new(bundle: SharedBundle, expected: ExpectedServer) -> Arc<Self> {
        Arc::new(Self { bundle, expected })
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<_> = std::iter::once(end_entity.clone())
            .chain(intermediates.iter().cloned())
            .collect();
        let svid = self
            .bundle
            .get()
            .verify(&chain, system_time(now), Usage::Server)
            .map_err(to_rustls)?;
        let ExpectedServer::Exact(expected) = &self.expected;
        if &svid.id != expected {
            return Err(to_rustls(VerifyError::WrongId {
                expected: expected.to_string(),
                got: svid.id.to_string(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}
