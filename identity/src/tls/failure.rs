//! Why a mutual-TLS handshake failed, in the fixed set of reasons operators see in metrics,
//! logs and `ferrule explain`: the certificate problem, or the protocol.

use crate::verify::VerifyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandshakeReason {
    NoClientCertificate,
    UnknownCa,
    Expired,
    NotYetValid,
    Revoked,
    WrongSpiffeId,
    WrongTrustDomain,
    /// Not an X.509-SVID: a CA certificate as leaf, no or several URI SANs.
    NotSvid,
    /// Key usage or extended key usage not as the mesh issues them.
    BadUsage,
    /// A CA signed outside its trust domain (or outside a name constraint).
    NameConstraint,
    /// A node, admin or control-plane certificate where only workloads may connect.
    NotWorkload,
    ProtocolVersion,
    Other,
}

impl HandshakeReason {
    pub const ALL: [Self; 13] = [
        Self::NoClientCertificate,
        Self::UnknownCa,
        Self::Expired,
        Self::NotYetValid,
        Self::Revoked,
        Self::WrongSpiffeId,
        Self::WrongTrustDomain,
        Self::NotSvid,
        Self::BadUsage,
        Self::NameConstraint,
        Self::NotWorkload,
        Self::ProtocolVersion,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoClientCertificate => "no_client_certificate",
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::WrongSpiffeId => "wrong_spiffe_id",
            Self::WrongTrustDomain => "wrong_trust_domain",
            Self::NotSvid => "not_svid",
            Self::BadUsage => "bad_usage",
            Self::NameConstraint => "name_constraint",
            Self::NotWorkload => "not_workload",
            Self::ProtocolVersion => "protocol_version",
            Self::Other => "other",
        }
    }

    pub fn of_verify(error: &VerifyError) -> Self {
        match error {
            VerifyError::NoCertificate => Self::NoClientCertificate,
            VerifyError::UnknownCa | VerifyError::EmptyBundle => Self::UnknownCa,
            VerifyError::Expired => Self::Expired,
            VerifyError::NotYetValid => Self::NotYetValid,
            VerifyError::Revoked => Self::Revoked,
            VerifyError::WrongId { .. } => Self::WrongSpiffeId,
            VerifyError::WrongTrustDomain { .. } => Self::WrongTrustDomain,
            VerifyError::NotSvid(_) => Self::NotSvid,
            VerifyError::BadUsage(_) => Self::BadUsage,
            VerifyError::NameConstraint(_) => Self::NameConstraint,
            VerifyError::NotWorkload { .. } => Self::NotWorkload,
            VerifyError::Malformed(_) => Self::Other,
        }
    }

    /// A rustls error: our verifier's verdict on the peer's certificate, a protocol mismatch,
    /// or what the peer's alert says about our own certificate.
    pub fn of_tls(error: &rustls::Error) -> Self {
        use rustls::{AlertDescription as A, Error as E, PeerIncompatible as P};
        if let Some(verify) = super::verify_error_of(error) {
            return Self::of_verify(&verify);
        }
        match error {
            E::NoCertificatesPresented => Self::NoClientCertificate,
            E::PeerIncompatible(
                P::SupportedVersionsExtensionRequired
                | P::Tls12NotOffered
                | P::Tls12NotOfferedOrEnabled
                | P::ServerDoesNotSupportTls12Or13
                | P::ServerTlsVersionIsDisabledByOurConfig,
            ) => Self::ProtocolVersion,
            E::AlertReceived(alert) => match alert {
                A::CertificateRequired => Self::NoClientCertificate,
                A::UnknownCA => Self::UnknownCa,
                A::CertificateExpired => Self::Expired,
                A::CertificateRevoked => Self::Revoked,
                A::ProtocolVersion => Self::ProtocolVersion,
                _ => Self::Other,
            },
            _ => Self::Other,
        }
    }

    /// An I/O error from tokio-rustls, which carries rustls' error inside.
    pub fn of_io(error: &std::io::Error) -> Self {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map_or(Self::Other, Self::of_tls)
    }
}

impl std::fmt::Display for HandshakeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_and_alert_failures_have_their_own_reasons() {
        use rustls::{AlertDescription as A, Error as E, PeerIncompatible as P};
        let cases = [
            (E::NoCertificatesPresented, "no_client_certificate"),
            (
                E::PeerIncompatible(P::SupportedVersionsExtensionRequired),
                "protocol_version",
            ),
            (E::AlertReceived(A::CertificateRevoked), "revoked"),
            (E::AlertReceived(A::UnknownCA), "unknown_ca"),
            (E::AlertReceived(A::HandshakeFailure), "other"),
        ];
        for (error, reason) in cases {
            assert_eq!(
                HandshakeReason::of_tls(&error).as_str(),
                reason,
                "{error:?}"
            );
        }
    }
}
