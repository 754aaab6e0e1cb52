//! A one-off diagnostic connection, made only after a call failed for a reason the error chain
//! no longer tells us.
//!
//! In TLS 1.3 the server judges our certificate after the client already considers the
//! handshake done, so its rejection arrives as an alert on the first read — inside h2, which
//! keeps only the error's text, or not at all when the connection is simply seen closing. A
//! bare handshake plus one read gets the typed rustls error back.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::explain::Diagnosis;

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong on a fresh connection, or `None` when it looked healthy (or the probe itself
/// timed out) and there is nothing better to say.
pub async fn diagnose(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Option<Diagnosis> {
    match tokio::time::timeout(PROBE_TIMEOUT, handshake_and_read(addr, tls)).await {
        Ok(Ok(0)) => Some(Diagnosis::ClosedAfterHandshake),
        Ok(Ok(_)) | Err(_) => None,
        Ok(Err(e)) => Some(Diagnosis::from_io(e)),
    }
}

/// Connects like `ferrule_proto::channel::lazy` does, then reads the server's first bytes (its
/// HTTP/2 SETTINGS on success, an alert when it rejected our certificate).
async fn handshake_and_read(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> io::Result<usize> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("ferrule-control-plane").expect("valid DNS name");
    let mut stream = TlsConnector::from(tls).connect(name, tcp).await?;
    let mut first = [0u8; 1];
    stream.read(&mut first).await
}
