//! A tonic channel to the control plane over our own rustls client config, so every client (agent,
//! CLI, tests) gets the same TLS 1.3 + SPIFFE server verification.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// Per replica, so that a dead one (no answer at all) costs little before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A channel that connects on first use and reconnects after failures. `tls` must offer ALPN h2.
/// `addr` is `ip:port` or `host:port`, or several separated by commas (control-plane replicas):
/// each (re)connect starts at the replica that last answered (at first a random one, so that
/// clients spread over the replicas) and moves on to the next when it does not answer. A host
/// name is resolved again on every (re)connect, so a Kubernetes Service name follows the Service.
pub fn lazy(addr: impl std::fmt::Display, tls: Arc<rustls::ClientConfig>) -> Channel {
    let addrs = Replicas::parse(&addr.to_string());
    // The URI only labels the channel; the connector below dials the replicas itself.
    let endpoint = Endpoint::from_shared(format!("http://{}", addrs.label()))
        .unwrap_or_else(|_| Endpoint::from_static("http://ferrule-control-plane"))
        .connect_timeout(CONNECT_TIMEOUT * addrs.len() as u32)
        .timeout(Duration::from_secs(30))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let connector = TlsConnector::from(tls);
    let addrs = Arc::new(addrs);
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let (connector, addrs) = (connector.clone(), addrs.clone());
        async move { addrs.connect(&connector).await }
    }))
}

/// The replicas of one channel and which answered last.
#[derive(Debug)]
struct Replicas {
    addrs: Vec<String>,
    current: AtomicUsize,
}

impl Replicas {
    fn parse(text: &str) -> Self {
        let addrs: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        let start = if addrs.len() > 1 {
            rand::random_range(0..addrs.len())
        } else {
            0
        };
        Self {
            addrs,
            current: AtomicUsize::new(start),
        }
    }

    fn len(&self) -> usize {
        self.addrs.len().max(1)
    }

    fn label(&self) -> &str {
        self.addrs
            .first()
            .map_or("ferrule-control-plane", String::as_str)
    }

    /// The replicas in the order to try them: the last that answered first.
    fn order(&self) -> impl Iterator<Item = (usize, &str)> {
        let start = self.current.load(Ordering::Relaxed);
        (0..self.addrs.len()).map(move |i| {
            let index = (start + i) % self.addrs.len();
            (index, self.addrs[index].as_str())
        })
    }

    async fn connect(
        &self,
        connector: &TlsConnector,
    ) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, std::io::Error> {
        let mut last_error = std::io::Error::other("no control-plane address configured");
        for (index, addr) in self.order() {
            match tokio::time::timeout(CONNECT_TIMEOUT, dial(connector, addr)).await {
                Ok(Ok(tls)) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(TokioIo::new(tls));
                }
                Ok(Err(error)) => last_error = error,
                Err(_) => {
                    last_error = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{addr} did not answer within {CONNECT_TIMEOUT:?}"),
                    );
                }
            }
        }
        Err(last_error)
    }
}

async fn dial(
    connector: &TlsConnector,
    addr: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    // The SPIFFE verifier ignores the name; rustls needs one for SNI.
    let name = ServerName::try_from("ferrule-control-plane").expect("valid DNS name");
    connector.connect(name, tcp).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_tried_from_the_last_that_answered_around_the_list() {
        let replicas = Replicas::parse("a:1, b:2 ,c:3");
        assert_eq!(replicas.len(), 3);
        replicas.current.store(1, Ordering::Relaxed);
        let order: Vec<&str> = replicas.order().map(|(_, a)| a).collect();
        assert_eq!(order, ["b:2", "c:3", "a:1"]);
        let single = Replicas::parse("10.0.0.1:9443");
        assert_eq!(
            single.order().map(|(_, a)| a).collect::<Vec<_>>(),
            ["10.0.0.1:9443"]
        );
    }
}
