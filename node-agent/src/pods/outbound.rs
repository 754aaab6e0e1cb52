//! A pod's outbound listener: connections the eBPF capture redirected here go to their original
//! destination, through an HBONE tunnel when it is a mesh workload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferrule_identity::SpiffeId;
use tokio::net::{TcpListener, TcpStream};

use super::peers::{PeerDirectory, PeerInfo};
use super::{INBOUND_PORT, Shared};
use crate::config::NonMesh;
use crate::limits::{Admission, CapKey};
use crate::mesh_config::Lookup;
use crate::netns::Netns;
use crate::proxy::{OutboundError, Relayed, TunnelKey, relay_until};
use crate::telemetry::{
    CloseReason, ConnectionRecord, Direction, HandshakeFailure, Limit, Listener, Side,
};

const CERT_WAIT: Duration = Duration::from_secs(5);

/// The pod whose outbound connections a listener serves.
#[derive(Clone)]
pub(super) struct PodSide {
    pub(super) netns: Arc<Netns>,
    pub(super) cookie: u64,
    pub(super) id: SpiffeId,
    pub(super) peers: Arc<PeerDirectory>,
}

/// Accepts until the agent drains (its successor accepts on the same socket then).
pub(super) async fn serve(shared: Arc<Shared>, listener: TcpListener, pod: PodSide) {
    // Taking over, the previous agent accepts until it confirmed.
    shared.drain.accepting().await;
    loop {
        let accepted = tokio::select! {
            () = shared.drain.draining() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let Some(admitted) = admit(&shared, &pod, &tcp) else {
                    continue;
                };
                let (shared, pod) = (shared.clone(), pod.clone());
                let open = shared.drain.track();
                tokio::spawn(async move {
                    handle(&shared, &pod, tcp, peer).await;
                    drop((open, admitted));
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbound accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The connection's slot under the pod's cap and the agent's, or `None` after refusing it with
/// a TCP reset: the app sees `ECONNRESET` at once instead of a connection that hangs, and the
/// agent holds no descriptor for it.
fn admit(shared: &Shared, pod: &PodSide, tcp: &TcpStream) -> Option<Admission> {
    match shared.caps.admit(CapKey::Pod(pod.cookie)) {
        Ok(admitted) => Some(admitted),
        Err(limit) => {
            shared.telemetry.limit_hit(Listener::Outbound, limit);
            tracing::debug!(source = %pod.id, limit = limit.as_str(), "outbound connection refused: limit reached");
            let _ = tcp.set_zero_linger();
            None
        }
    }
}

async fn handle(shared: &Shared, pod: &PodSide, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let source = &pod.id;
    let Some(original) = shared.capture.original_destination(pod.cookie, peer) else {
        // The pod connected faster than the agent accepts, beyond its flow map's slots.
        shared
            .telemetry
            .limit_hit(Listener::Outbound, Limit::PodFlowSlots);
        tracing::warn!(%source, %peer, limit = Limit::PodFlowSlots.as_str(), "no original destination recorded (evicted from the pod's flow map); resetting");
        // A reset, not a FIN the application could take for a clean, empty answer.
        let _ = tcp.set_zero_linger();
        return;
    };
    if !shared.mesh.is_ready() {
        // Without the directory, a mesh destination would look like a non-mesh one and leave
        // in plaintext: refuse until the first configuration version is applied.
        tracing::warn!(%source, dst = %original, reason = crate::proxy::CONFIG_NOT_READY, "outbound connection refused: no mesh configuration applied yet");
        return;
    }
    match shared.mesh.lookup(original.ip()) {
        Lookup::Workload(destination) => mesh(shared, pod, destination.id, tcp, original).await,
        Lookup::Ambiguous(uids) => refuse_ambiguous(shared, source, &tcp, original, &uids),
        Lookup::NotInMesh => non_mesh(shared, &pod.netns, source, tcp, original).await,
    }
}

/// Neither mesh (whose identity would we pin?) nor plaintext (it is a mesh address).
fn refuse_ambiguous(
    shared: &Shared,
    source: &SpiffeId,
    tcp: &TcpStream,
    original: SocketAddr,
    uids: &[String],
) {
    let error = format!(
        "{} is claimed by several workloads ({}); refusing rather than guessing its identity",
        original.ip(),
        uids.join(", ")
    );
    tracing::warn!(%source, dst = %original, %error, "outbound connection refused");
    shared.telemetry.connection_closed(&ConnectionRecord {
        time: SystemTime::now(),
        direction: Direction::Outbound,
        source_identity: source.to_string(),
        destination_identity: String::new(),
        source_address: tcp.peer_addr().unwrap_or(original),
        destination_address: original,
        decision: "deny".to_owned(),
        rule: "ambiguous_destination".to_owned(),
        bytes_to_destination: 0,
        bytes_to_source: 0,
        duration_ms: 0,
        close_reason: CloseReason::Error,
        error: Some(error),
    });
}

async fn mesh(
    shared: &Shared,
    pod: &PodSide,
    destination: SpiffeId,
    tcp: TcpStream,
    original: SocketAddr,
) {
    let source = &pod.id;
    let started = Instant::now();
    let client = tcp.peer_addr().unwrap_or(original);
    let record = |decision: &str, relayed: Option<(&Relayed, bool)>, error: Option<String>| {
        let close_reason = match (relayed, &error) {
            (Some((_, true)), _) => CloseReason::Drain,
            (Some((r, false)), None) if r.result.is_ok() => CloseReason::Ok,
            _ => CloseReason::Error,
        };
        let relayed = relayed.map(|(r, _)| r);
        ConnectionRecord {
            time: SystemTime::now(),
            direction: Direction::Outbound,
            source_identity: source.to_string(),
            destination_identity: destination.to_string(),
            source_address: client,
            destination_address: original,
            decision: decision.to_owned(),
            rule: String::new(),
            bytes_to_destination: relayed.map_or(0, |r| r.tcp_to_tunnel),
            bytes_to_source: relayed.map_or(0, |r| r.tunnel_to_tcp),
            duration_ms: started.elapsed().as_millis() as u64,
            close_reason,
            error,
        }
    };
    let telemetry = &shared.telemetry;
    let cert = match shared.identities.certificate(source, CERT_WAIT).await {
        Ok(cert) => cert,
        Err(e) => {
            tracing::warn!(%source, dst = %original, error = %e, "no certificate; closing");
            telemetry.connection_closed(&record("error", None, Some(e.to_string())));
            return;
        }
    };
    let key = TunnelKey {
        source: source.clone(),
        destination: destination.clone(),
        address: SocketAddr::new(original.ip(), INBOUND_PORT),
    };
    let stream = match shared
        .pool
        .connect(&key, &cert, &shared.bundle, original)
        .await
    {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(src = %source, dst = %destination, addr = %original, error = %e, "outbound tunnel failed");
            if let OutboundError::Handshake {
                source: failure,
                address,
            } = &e
            {
                telemetry.handshake_failed(HandshakeFailure {
                    side: Side::Client,
                    reason: failure.reason(),
                    source: client,
                    source_identity: Some(source.as_str()),
                    destination: *address,
                    destination_identity: destination.as_str(),
                    detail: failure.to_string(),
                });
            }
            let decision = match e.status() {
                Some(status) if status.as_u16() == 401 => "deny",
                _ => "error",
            };
            telemetry.connection_closed(&record(decision, None, Some(e.to_string())));
            return;
        }
    };
    telemetry.connection_opened(Direction::Outbound, source.as_str(), destination.as_str());
    // The app's socket: its own address, and what it may see as the other end.
    let redirected_to = tcp.local_addr().unwrap_or(original);
    let _listed = pod.peers.list(PeerInfo {
        direction: "outbound",
        local: client,
        remote: vec![original, redirected_to],
        peer_identity: destination.to_string(),
        local_identity: source.to_string(),
    });
    let drain = shared.drain.clone();
    let drained = async move {
        drain.closing().await;
        "the agent's drain timeout passed"
    };
    let (relayed, cut) = relay_until(stream, tcp, drained).await;
    tracing::info!(
        src = %source, dst = %destination, addr = %original,
        sent = relayed.tcp_to_tunnel, received = relayed.tunnel_to_tcp,
        duration_ms = started.elapsed().as_millis() as u64,
        result = ?relayed.result.as_ref().err(),
        "outbound connection closed"
    );
    let error = relayed.result.as_ref().err().map(|e| e.to_string());
    telemetry.connection_closed(&record("allow", Some((&relayed, cut.is_some())), error));
}

async fn non_mesh(
    shared: &Shared,
    netns: &Netns,
    source: &SpiffeId,
    mut tcp: TcpStream,
    original: SocketAddr,
) {
    if shared.non_mesh == NonMesh::Deny {
        tracing::info!(%source, dst = %original, "non-mesh destination refused (non_mesh: deny)");
        return;
    }
    // From the pod's own netns, so the destination sees the pod's address as before.
    let upstream = match netns.tcp_socket(original.is_ipv6()) {
        Ok(socket) => socket.connect(original).await,
        Err(e) => Err(e),
    };
    match upstream {
        Ok(mut upstream) => {
            let copied = tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut tcp, &mut upstream) => copied,
                () = shared.drain.closing() => Err(std::io::Error::other("drain timeout")),
            };
            tracing::info!(%source, dst = %original, result = ?copied, "passthrough connection closed");
        }
        Err(e) => {
            tracing::info!(%source, dst = %original, error = %e, "passthrough connect failed")
        }
    }
}
