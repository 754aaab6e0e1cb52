//! Opening a tunnel connection (TCP, mutual TLS 1.3, HTTP/2) and the task that drives it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use ferrule_identity::SharedBundle;
use ferrule_identity::tls::{self, CertSlot, ExpectedServer, SpiffeServerVerifier};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::debug;

use super::tunnel::{Credentials, State, Tunnel};
use super::{PoolConfig, TunnelKey};
use crate::identity::WorkloadCert;
use crate::proxy::{ALPN_H2, OutboundError, settings};

type Connection = h2::client::Connection<TlsStream<TcpStream>, Bytes>;

/// Connects (the caller bounds how long) and starts the connection's driver task, which calls
/// `on_close` with the tunnel's id when the connection ends.
pub(super) async fn dial(
    key: &TunnelKey,
    source: &WorkloadCert,
    bundle: &SharedBundle,
    config: &PoolConfig,
    on_close: impl FnOnce(u64) + Send + 'static,
) -> Result<Arc<Tunnel>, OutboundError> {
    let address = key.address;
    let connecting = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|source| OutboundError::Connect { address, source })?;
        let _ = tcp.set_nodelay(true);
        let mut tls = connector(key, source, bundle)
            .connect(ServerName::from(address.ip()), tcp)
            .await
            .map_err(|e| OutboundError::Handshake {
                address,
                source: e.into(),
            })?;
        tls.get_mut()
            .1
            .set_buffer_limit(Some(settings::TLS_SEND_BUFFER));
        let peer_chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
        let credentials = Credentials {
            source_serial: source.serial.clone(),
            peer_chain: peer_chain.iter().map(|c| c.clone().into_owned()).collect(),
        };
        let (sender, conn) = settings::client(config.max_streams_per_connection)
            .handshake(tls)
            .await
            .map_err(|source| OutboundError::Http2 { address, source })?;
        Ok::<_, OutboundError>((sender, conn, credentials))
    };
    let (sender, conn, credentials) = connecting.await?;
    let tunnel = Tunnel::new(
        address,
        sender,
        source.certified.clone(),
        credentials,
        config.max_streams_per_connection,
    );
    let tunnel = Arc::new(tunnel);
    let (id, state) = (tunnel.id(), tunnel.state.clone());
    let key = key.clone();
    let idle_timeout = config.idle_timeout;
    tokio::spawn(async move {
        let why = drive(conn, &state, idle_timeout).await;
        state.closed.store(true, Ordering::Release);
        on_close(id);
        debug!(source = %key.source, destination = %key.destination, address = %key.address, %why, "HBONE tunnel closed");
    });
    Ok(tunnel)
}

/// A client that presents `source` and accepts only the destination identity of `key`.
pub(in crate::proxy) fn connector(
    key: &TunnelKey,
    source: &WorkloadCert,
    bundle: &SharedBundle,
) -> TlsConnector {
    let certs = Arc::new(CertSlot::new(source.certified.clone()));
    let expected = ExpectedServer::Exact(key.destination.clone());
    let verifier = SpiffeServerVerifier::new(bundle.clone(), expected);
    TlsConnector::from(Arc::new(tls::client_config(
        Some(certs),
        verifier,
        &[ALPN_H2],
    )))
}

/// Runs the connection until the peer closes it, stops answering pings, the pool closes it, or
/// it has carried no stream for an idle period; returns which.
async fn drive(mut conn: Connection, state: &State, idle_timeout: Duration) -> String {
    let keepalive = settings::keepalive(
        conn.ping_pong().expect("taken only here"),
        settings::PING_INTERVAL,
        settings::PING_TIMEOUT,
    );
    tokio::select! {
        result = &mut conn => match result {
            Ok(()) => "closed by the peer".into(),
            Err(e) => format!("connection failed: {e}"),
        },
        failure = keepalive => failure.to_string(),
        () = state.close.notified() => "closed by the pool".into(),
        () = idle(state, idle_timeout) => "idle".into(),
    }
}

async fn idle(state: &State, timeout: Duration) {
    let mut seen = u64::MAX;
    loop {
        tokio::time::sleep(timeout).await;
        let opened = state.opened.load(Ordering::Relaxed);
        if state.active.load(Ordering::Acquire) == 0 && opened == seen {
            return;
        }
        seen = opened;
    }
}
