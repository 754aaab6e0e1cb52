//! A tonic channel to the control plane over our own rustls client config, so every client (agent,
//! CLI, tests) gets the same TLS 1.3 + SPIFFE server verification.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A channel that connects on first use and reconnects after failures. `tls` must offer ALPN h2.
/// `addr` is `ip:port` or `host:port`; a host name is resolved again on every (re)connect, so a
/// Kubernetes Service name follows the Service.
pub fn lazy(addr: impl std::fmt::Display, tls: Arc<rustls::ClientConfig>) -> Channel {
    let addr = addr.to_string();
    // The URI only labels the channel; the connector below dials `addr` itself.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|_| Endpoint::from_static("http://ferrule-control-plane"))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(30))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let connector = TlsConnector::from(tls);
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let addr = addr.clone();
        async move {
            let tcp = TcpStream::connect(addr.as_str()).await?;
            tcp.set_nodelay(true)?;
            // The SPIFFE verifier ignores the name; rustls needs one for SNI.
            let name = ServerName::try_from("ferrule-control-plane").expect("valid DNS name");
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    }))
}
