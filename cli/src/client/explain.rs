//! From a failed gRPC call to a sentence an operator can act on.
//!
//! Statuses that the control plane sent carry no error source; statuses that tonic made from a
//! transport failure keep the original error as their source, so we walk that chain looking for
//! the TLS error (rustls) or the socket error (io) underneath.

use std::error::Error as StdError;
use std::{fmt, io};

use ferrule_identity::tls::verify_error_of;
use ferrule_identity::{SpiffeId, TrustDomain, VerifyError};
use rustls::AlertDescription;
use tonic::{Code, Status};

/// Flag and environment variable of the control plane address, for fixes that point at it.
pub const ADDR_FLAG: &str = "--control-plane or FERRULE_CONTROL_PLANE";
/// Flags and environment variable of the admin identity.
const IDENTITY_FLAGS: &str = "--cert, --ca-dir or FERRULE_CA_DIR";

/// A failure explained: what went wrong, and what to look at. Printed as `problem — fix`;
/// `ferrule check` shows the two apart.
#[derive(Debug)]
pub struct Explanation {
    pub problem: String,
    pub fix: Option<String>,
}

impl Explanation {
    pub fn error(problem: impl Into<String>, fix: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Self {
            problem: problem.into(),
            fix: Some(fix.into()),
        })
    }

    fn bare_error(problem: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Self {
            problem: problem.into(),
            fix: None,
        })
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fix {
            Some(fix) => write!(f, "{} — {fix}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl StdError for Explanation {}

/// The control plane answered, and said no.
pub fn refusal(addr: &str, status: &Status) -> anyhow::Error {
    let msg = status.message();
    match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            Explanation::bare_error(format!("the control plane rejected the request: {msg}"))
        }
        Code::Unauthenticated | Code::PermissionDenied => Explanation::error(
            format!("the control plane at {addr} refused the admin certificate: {msg}"),
            format!("use an admin certificate it accepts ({IDENTITY_FLAGS})"),
        ),
        Code::NotFound => Explanation::bare_error(format!("not found: {msg}")),
        Code::AlreadyExists => Explanation::bare_error(format!("already exists: {msg}")),
        Code::Unimplemented => Explanation::error(
            format!("the control plane at {addr} does not implement this call ({msg})"),
            "is it an older version than this ferrule?",
        ),
        code => Explanation::bare_error(format!(
            "the control plane at {addr} failed the call ({code:?}): {msg}"
        )),
    }
}

/// Why a call got no answer, as far as we could tell.
#[derive(Debug)]
pub enum Diagnosis {
    /// The TLS layer failed, with rustls' typed reason.
    Tls(rustls::Error),
    /// A socket error: refused, reset, timed out, unreachable.
    Socket(io::Error),
    /// No answer within the call deadline.
    Deadline,
    /// The server completed the handshake and hung up without a word.
    ClosedAfterHandshake,
    /// Only text survived (h2 stringifies errors); worth a diagnostic connection.
    Unclear(String),
}

impl Diagnosis {
    /// Reads the failure's error chain.
    pub fn from_chain(err: &(dyn StdError + 'static)) -> Self {
        if let Some(tls) = find::<rustls::Error>(err) {
            return Self::Tls(tls.clone());
        }
        if find::<tonic::TimeoutExpired>(err).is_some() {
            return Self::Deadline;
        }
        match find::<io::Error>(err) {
            Some(io) if io.raw_os_error().is_some() || io.kind() == io::ErrorKind::TimedOut => {
                Self::Socket(io::Error::new(io.kind(), io_text(io)))
            }
            _ => Self::Unclear(chain_text(err)),
        }
    }

    /// An error from our own connection attempt, where the types are intact.
    pub fn from_io(err: io::Error) -> Self {
        let tls = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned();
        match tls {
            Some(tls) => Self::Tls(tls),
            None => Self::Socket(io::Error::new(err.kind(), io_text(&err))),
        }
    }

    /// Whether a diagnostic connection could tell us more.
    pub fn is_unclear(&self) -> bool {
        matches!(self, Self::Unclear(_))
    }

    pub fn explain(self, addr: &str, td: &TrustDomain) -> anyhow::Error {
        match self {
            Self::Tls(err) => handshake(addr, td, &err),
            Self::Socket(err) => unreachable(addr, &err),
            Self::Deadline => Explanation::error(
                format!("the control plane at {addr} did not answer in time"),
                "is it overloaded?",
            ),
            Self::ClosedAfterHandshake => Explanation::error(
                format!(
                    "the control plane at {addr} closed the connection right after the TLS \
                     handshake"
                ),
                "its log should say why (revoked or unknown admin certificate?)",
            ),
            Self::Unclear(text) => Explanation::error(
                format!("the connection to the control plane at {addr} failed: {text}"),
                format!("check the address ({ADDR_FLAG})"),
            ),
        }
    }
}

fn unreachable(addr: &str, err: &io::Error) -> anyhow::Error {
    use io::ErrorKind as K;
    let hint = match err.kind() {
        K::ConnectionRefused => "is ferrule-control-plane running?",
        K::TimedOut => "is the address right, and does a firewall drop the traffic?",
        K::ConnectionReset | K::UnexpectedEof | K::BrokenPipe => {
            "the peer closed the connection; is a Ferrule control plane (TLS) listening there?"
        }
        _ => "is the address right?",
    };
    Explanation::error(
        format!("cannot reach the control plane at {addr}: {err}"),
        format!("{hint} ({ADDR_FLAG})"),
    )
}

/// `connection refused` rather than `Connection refused (os error 111)`.
fn io_text(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(_) => err.kind().to_string(),
        None => err.to_string(),
    }
}

fn handshake(addr: &str, td: &TrustDomain, err: &rustls::Error) -> anyhow::Error {
    let prefix = format!("TLS handshake with the control plane at {addr} failed");
    if let Some(reason) = verify_error_of(err) {
        let hint = match reason {
            // The reason already names both identities.
            VerifyError::WrongId { .. } => {
                format!("is the address the control plane? ({ADDR_FLAG})")
            }
            _ => format!(
                "the control plane must present {} issued under the trust bundle (--bundle, \
                 --ca-dir)",
                SpiffeId::control_plane(td)
            ),
        };
        return Explanation::error(
            format!("{prefix}: its certificate was not accepted: {reason}"),
            hint,
        );
    }
    match err {
        rustls::Error::AlertReceived(alert) if rejects_client_cert(*alert) => Explanation::error(
            format!(
                "{prefix}: the control plane rejected the admin certificate (alert: {alert:?})"
            ),
            format!(
                "is it issued by the CA the control plane uses, and not revoked? ({IDENTITY_FLAGS})"
            ),
        ),
        rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol) => {
            Explanation::error(
                format!("{prefix}: the server does not speak gRPC over h2 (ALPN)"),
                format!("is the address the control plane's gRPC port? ({ADDR_FLAG})"),
            )
        }
        rustls::Error::InvalidMessage(_) => Explanation::error(
            format!("{prefix}: {err}"),
            format!(
                "is the address the control plane's TLS port and not a plaintext or HTTP/1 \
                 service? ({ADDR_FLAG})"
            ),
        ),
        other => Explanation::bare_error(format!("{prefix}: {other}")),
    }
}

fn rejects_client_cert(alert: AlertDescription) -> bool {
    use AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            | A::DecryptError
    )
}

/// The first error of type `T` in the chain.
fn find<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    causes(err).find_map(|e| e.downcast_ref::<T>())
}

/// The error and its causes, outermost first. `io::Error::source` skips the error an
/// `io::Error` wraps (tokio-rustls wraps TLS errors that way), so we step into it instead.
fn causes<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&err| {
        match err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => err.source(),
        }
    })
}

fn chain_text(err: &(dyn StdError + 'static)) -> String {
    crate::output::causes_text(causes(err).map(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn explain(err: impl StdError + Send + Sync + 'static) -> String {
        let status = Status::from_error(Box::new(err));
        let diagnosis = Diagnosis::from_chain(status.source().expect("transport status"));
        format!("{:#}", diagnosis.explain("cp:8443", &td()))
    }

    #[test]
    fn finds_tls_error_wrapped_in_io_error() {
        let tls = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        let msg = explain(io::Error::new(io::ErrorKind::InvalidData, tls));
        assert!(
            msg.contains("rejected the admin certificate") && msg.contains("UnknownCA"),
            "expected a client-certificate explanation, got {msg:?}"
        );
    }

    #[test]
    fn connection_refused_names_address_and_flag() {
        let msg = explain(io::Error::from_raw_os_error(111));
        assert!(
            msg.contains("cannot reach the control plane at cp:8443: connection refused")
                && msg.contains("--control-plane"),
            "got {msg:?}"
        );
    }

    #[test]
    fn stringified_errors_are_unclear() {
        let status = Status::from_error(Box::new(io::Error::other("connection closed")));
        let diagnosis = Diagnosis::from_chain(status.source().unwrap());
        assert!(diagnosis.is_unclear(), "{diagnosis:?}");
    }

    #[test]
    fn server_refusal_keeps_its_message() {
        let status = Status::invalid_argument("ttl 99999s exceeds the maximum of 86400s");
        assert_eq!(
            format!("{:#}", refusal("cp:8443", &status)),
            "the control plane rejected the request: ttl 99999s exceeds the maximum of 86400s"
        );
    }
}
