//! A pod's HBONE listener: verified peers that policy allows get connected to the app inside
//! the pod's netns, and stay connected only while they remain allowed.

use std::any::Any;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use ferrule_identity::SpiffeId;
use ferrule_policy::{Decision, Request, Verdict, Workload};
use tokio::net::TcpListener;

use super::peers::{PeerDirectory, PeerInfo};
use crate::config::Limits;
use crate::lifecycle::Drain;
use crate::limits::{CapKey, ConnectionCaps};
use crate::mesh_config::{MeshConfig, MeshState};
use crate::netns::Netns;
use crate::proxy::{
    Admitted, CONFIG_NOT_READY, Finished, HandshakeError, InboundRefusal, InboundTarget, Peer,
    Revoked, Withdrawn, serve_inbound,
};
use crate::telemetry::{
    CloseReason, ConnectionRecord, Direction, HandshakeFailure, Limit, Listener, Side, Telemetry,
};

/// The pod as policies select it.
#[derive(Debug, Clone)]
pub(super) struct PodWorkload {
    pub(super) id: SpiffeId,
    pub(super) namespace: String,
    pub(super) service_account: String,
    pub(super) labels: BTreeMap<String, String>,
}

impl PodWorkload {
    fn decide(&self, state: &MeshState, peer: &Peer, port: u16) -> Decision {
        state.policies().evaluate(&Request {
            source: &peer.id,
            destination: Workload {
                spiffe_id: &self.id,
                namespace: &self.namespace,
                service_account: &self.service_account,
                labels: &self.labels,
            },
            port,
        })
    }
}

/// Why `peer` may no longer use its certificate, if it may not.
fn revocation(state: &MeshState, peer: &Peer) -> Option<Withdrawn> {
    let revoked = state.revocations();
    if revoked.serial_revoked(&peer.serial) {
        return Some(Withdrawn::Revoked(format!(
            "certificate {} revoked",
            peer.serial
        )));
    }
    revoked
        .identity_revoked(peer.id.as_str())
        .then(|| Withdrawn::Revoked(format!("identity {} revoked", peer.id)))
}

/// Why a connection allowed earlier must now close, checked against `state`.
fn withdrawn(state: &MeshState, pod: &PodWorkload, peer: &Peer, port: u16) -> Option<Withdrawn> {
    revocation(state, peer).or_else(|| {
        let decision = pod.decide(state, peer, port);
        (!decision.verdict.allows())
            .then(|| Withdrawn::Policy(format!("policy changed: {decision}")))
    })
}

/// Completes with a reason once `check` finds one in a newer configuration version.
fn until_withdrawn(
    mesh: &MeshConfig,
    check: impl Fn(&MeshState) -> Option<Withdrawn> + Send + 'static,
) -> Revoked {
    let mut versions = mesh.subscribe();
    Box::pin(async move {
        loop {
            if versions.changed().await.is_err() {
                // The agent is shutting down; the connection ends with it.
                return std::future::pending().await;
            }
            let state = versions.borrow_and_update().clone();
            if let Some(reason) = check(&state) {
                return reason;
            }
        }
    })
}

/// `withdrawn`, or a drain reason once the agent's drain timeout passed.
fn until_drained(drain: &Drain, withdrawn: Revoked) -> Revoked {
    let drain = drain.clone();
    Box::pin(async move {
        tokio::select! {
            reason = withdrawn => reason,
            () = drain.closing() => Withdrawn::Drain("the agent's drain timeout passed".into()),
        }
    })
}

/// A pod's application behind its HBONE listener.
pub(super) struct PodApp {
    pub(super) peers: Arc<PeerDirectory>,
    pub(super) netns: Arc<Netns>,
    pub(super) ips: Vec<IpAddr>,
    pub(super) pod: Arc<PodWorkload>,
    pub(super) mesh: MeshConfig,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) drain: Drain,
    pub(super) caps: Arc<ConnectionCaps>,
}

#[tonic::async_trait]
impl InboundTarget for PodApp {
    async fn connect(&self, peer: &Peer, dst: SocketAddr) -> Result<Admitted, InboundRefusal> {
        // The tunnel ends here: it may reach this pod's own addresses, never relay elsewhere.
        if !self.ips.contains(&dst.ip()) {
            return Err(InboundRefusal::BadRequest(format!(
                "{dst} is not an address of this pod"
            )));
        }
        let state = self.mesh.current();
        if !state.is_applied() {
            self.refuse_before_config(peer, dst);
            return Err(InboundRefusal::ConfigNotReady);
        }
        if let Some(reason) = revocation(&state, peer) {
            return Err(InboundRefusal::Forbidden(reason.to_string()));
        }
        let decision = self.pod.decide(&state, peer, dst.port());
        let rule = decision.cause.rule_label();
        self.telemetry
            .authz_decided(decision.verdict.as_str(), rule.clone());
        if !decision.verdict.allows() {
            self.log_refusal(peer, dst, &decision, &rule);
        }
        match decision.verdict {
            Verdict::Deny => return Err(InboundRefusal::Forbidden(decision.to_string())),
            Verdict::Audit => {
                tracing::warn!(peer = %peer.id, %dst, decision = %decision, rule = %decision.cause.rule_label(), "audit: this connection would be denied");
            }
            Verdict::Allow => {}
        }
        let socket = self.netns.tcp_socket(dst.is_ipv6())?;
        let tcp = socket.connect(dst).await?;
        // The app sees our socket's address as the other end of its accepted connection.
        let listed = tcp.local_addr().ok().map(|ours| {
            self.peers.list(PeerInfo {
                direction: "inbound",
                local: dst,
                remote: vec![ours],
                peer_identity: peer.id.to_string(),
                local_identity: self.pod.id.to_string(),
            })
        });
        let (pod, peer_, port) = (self.pod.clone(), peer.clone(), dst.port());
        let withdrawn = until_withdrawn(&self.mesh, move |state| {
            withdrawn(state, &pod, &peer_, port)
        });
        let until = until_drained(&self.drain, withdrawn);
        let open = self.drain.track();
        tracing::debug!(peer = %peer.id, %dst, %decision, "inbound stream connected to the app");
        self.telemetry.connection_opened(
            Direction::Inbound,
            peer.id.as_str(),
            self.pod.id.as_str(),
        );
        Ok(Admitted {
            tcp,
            decision: decision.verdict.as_str().to_owned(),
            rule,
            until,
            keep: Some(Box::new((listed, open))),
        })
    }

    fn peer_revoked(&self, peer: &Peer) -> Revoked {
        let peer = peer.clone();
        until_withdrawn(&self.mesh, move |state| revocation(state, &peer))
    }

    fn finished(&self, peer: &Peer, how: &Finished<'_>) {
        let close_reason = match (how.cut, &how.relayed.result) {
            (Some(Withdrawn::Revoked(_)), _) => CloseReason::Revoked,
            (Some(Withdrawn::Policy(_)), _) => CloseReason::Policy,
            (Some(Withdrawn::Drain(_)), _) => CloseReason::Drain,
            (None, Ok(())) => CloseReason::Ok,
            (None, Err(_)) => CloseReason::Error,
        };
        self.telemetry.connection_closed(&ConnectionRecord {
            bytes_to_destination: how.relayed.tunnel_to_tcp,
            bytes_to_source: how.relayed.tcp_to_tunnel,
            duration_ms: how.duration.as_millis() as u64,
            close_reason,
            error: how.relayed.result.as_ref().err().map(|e| e.to_string()),
            ..self.record(peer, how.destination, how.decision, how.rule)
        });
    }

    fn admit(&self, tunnel_peer: SocketAddr) -> Result<Option<Box<dyn Any + Send>>, Limit> {
        let slot = self.caps.admit(CapKey::Source(tunnel_peer.ip()))?;
        Ok(Some(Box::new(slot)))
    }

    fn limit_hit(&self, limit: Limit) {
        self.telemetry.limit_hit(Listener::Hbone, limit);
    }

    fn handshake_failed(&self, tunnel_peer: SocketAddr, error: &HandshakeError) {
        let destination = SocketAddr::new(
            self.ips.first().copied().unwrap_or(tunnel_peer.ip()),
            crate::proxy::HBONE_PORT,
        );
        self.telemetry.handshake_failed(HandshakeFailure {
            side: Side::Server,
            reason: error.reason(),
            source: tunnel_peer,
            source_identity: None,
            destination,
            destination_identity: self.pod.id.as_str(),
            detail: error.to_string(),
        });
    }
}

impl PodApp {
    /// The access-log record of a stream from `peer` to `dst`, as it stands before any byte.
    fn record(&self, peer: &Peer, dst: SocketAddr, decision: &str, rule: &str) -> ConnectionRecord {
        ConnectionRecord {
            time: SystemTime::now(),
            direction: Direction::Inbound,
            source_identity: peer.id.to_string(),
            destination_identity: self.pod.id.to_string(),
            source_address: peer.address,
            destination_address: dst,
            decision: decision.to_owned(),
            rule: rule.to_owned(),
            bytes_to_destination: 0,
            bytes_to_source: 0,
            duration_ms: 0,
            close_reason: CloseReason::Ok,
            error: None,
        }
    }

    /// A refused stream is also an access-log line: who was refused, by which rule.
    fn log_refusal(&self, peer: &Peer, dst: SocketAddr, decision: &Decision, rule: &str) {
        self.telemetry.connection_closed(&ConnectionRecord {
            close_reason: CloseReason::Policy,
            error: Some(decision.to_string()),
            ..self.record(peer, dst, decision.verdict.as_str(), rule)
        });
    }

    /// Before the first configuration version: counted and logged as a denial with its reason.
    fn refuse_before_config(&self, peer: &Peer, dst: SocketAddr) {
        self.telemetry
            .authz_decided("deny", CONFIG_NOT_READY.to_owned());
        self.telemetry.connection_closed(&ConnectionRecord {
            close_reason: CloseReason::Policy,
            error: Some(InboundRefusal::ConfigNotReady.to_string()),
            ..self.record(peer, dst, "deny", CONFIG_NOT_READY)
        });
    }
}

/// Serves until the agent drains; then its tunnels get GOAWAY (peers open new streams to the
/// successor) and their open streams run on until they end or the drain timeout cuts them.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: PodApp,
    limits: Arc<Limits>,
) {
    let drain = app.drain.clone();
    let draining = {
        let drain = drain.clone();
        async move { drain.draining().await }
    };
    let backstop = drain.timeout() + DRAIN_BACKSTOP;
    // Counted as open until every tunnel it accepted has ended: a tunnel whose TLS or first
    // CONNECT is still under way has no stream to count yet, and must not be cut by our exit.
    let _tunnels = drain.track();
    drain.accepting().await;
    serve_inbound(listener, tls, Arc::new(app), limits, draining, backstop).await;
}

/// Streams cut at the drain timeout get this long to log before their tunnels are dropped.
const DRAIN_BACKSTOP: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests;
