//! A pod's HBONE listener: verified peers get connected to the app inside the pod's netns.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ferrule_identity::SpiffeId;
use tokio::net::{TcpListener, TcpStream};

use crate::netns::Netns;
use crate::proxy::{InboundRefusal, InboundTarget, serve_inbound};

struct PodApp {
    netns: Arc<Netns>,
    ips: Vec<IpAddr>,
}

#[tonic::async_trait]
impl InboundTarget for PodApp {
    async fn connect(&self, peer: &SpiffeId, dst: SocketAddr) -> Result<TcpStream, InboundRefusal> {
        // The tunnel ends here: it may reach this pod's own addresses, never relay elsewhere.
        if !self.ips.contains(&dst.ip()) {
            return Err(InboundRefusal::BadRequest(format!(
                "{dst} is not an address of this pod"
            )));
        }
        let socket = self.netns.tcp_socket(dst.is_ipv6())?;
        let stream = socket.connect(dst).await?;
        let _ = stream.set_nodelay(true);
        tracing::debug!(%peer, %dst, "inbound stream connected to the app");
        Ok(stream)
    }
}

pub(super) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    netns: Arc<Netns>,
    ips: Vec<IpAddr>,
) {
    let target = Arc::new(PodApp { netns, ips });
    serve_inbound(listener, tls, target, std::future::pending()).await;
}
