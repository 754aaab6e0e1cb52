//! A pod's HBONE listener: verified peers that policy allows get connected to the app inside
//! the pod's netns, and stay connected only while they remain allowed.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ferrule_identity::SpiffeId;
use ferrule_policy::{Decision, Request, Verdict, Workload};
use tokio::net::TcpListener;

use crate::mesh_config::{MeshConfig, MeshState};
use crate::netns::Netns;
use crate::proxy::{Admitted, InboundRefusal, InboundTarget, Peer, Revoked, serve_inbound};

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
fn revocation(state: &MeshState, peer: &Peer) -> Option<String> {
    let revoked = state.revocations();
    if revoked.serial_revoked(&peer.serial) {
        return Some(format!("certificate {} revoked", peer.serial));
    }
    revoked
        .identity_revoked(peer.id.as_str())
        .then(|| format!("identity {} revoked", peer.id))
}

/// Why a connection allowed earlier must now close, checked against `state`.
fn withdrawn(state: &MeshState, pod: &PodWorkload, peer: &Peer, port: u16) -> Option<String> {
    revocation(state, peer).or_else(|| {
        let decision = pod.decide(state, peer, port);
        (!decision.verdict.allows()).then(|| format!("policy changed: {decision}"))
    })
}

/// Completes with a reason once `check` finds one in a newer configuration version.
fn until_withdrawn(
    mesh: &MeshConfig,
    check: impl Fn(&MeshState) -> Option<String> + Send + 'static,
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

struct PodApp {
    netns: Arc<Netns>,
    ips: Vec<IpAddr>,
    pod: Arc<PodWorkload>,
    mesh: MeshConfig,
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
        if let Some(reason) = revocation(&state, peer) {
            return Err(InboundRefusal::Forbidden(reason));
        }
        let decision = self.pod.decide(&state, peer, dst.port());
        match decision.verdict {
            Verdict::Deny => return Err(InboundRefusal::Forbidden(decision.to_string())),
            Verdict::Audit => {
                tracing::warn!(peer = %peer.id, %dst, decision = %decision, rule = %decision.cause.rule_label(), "audit: this connection would be denied");
            }
            Verdict::Allow => {}
        }
        let socket = self.netns.tcp_socket(dst.is_ipv6())?;
        let tcp = socket.connect(dst).await?;
        let (pod, peer_, port) = (self.pod.clone(), peer.clone(), dst.port());
        let until = until_withdrawn(&self.mesh, move |state| {
            withdrawn(state, &pod, &peer_, port)
        });
        tracing::debug!(peer = %peer.id, %dst, %decision, "inbound stream connected to the app");
        Ok(Admitted {
            tcp,
            decision: decision.to_string(),
            until,
        })
    }

    fn peer_revoked(&self, peer: &Peer) -> Revoked {
        let peer = peer.clone();
        until_withdrawn(&self.mesh, move |state| revocation(state, &peer))
    }
}

pub(super) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    netns: Arc<Netns>,
    ips: Vec<IpAddr>,
    pod: PodWorkload,
    mesh: MeshConfig,
) {
    let target = Arc::new(PodApp {
        netns,
        ips,
        pod: Arc::new(pod),
        mesh,
    });
    serve_inbound(listener, tls, target, std::future::pending()).await;
}
