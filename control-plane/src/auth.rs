//! Who is calling: derived only from the client certificate verified during the TLS handshake.

use ferrule_identity::{IdKind, SharedBundle, SpiffeId};
use tonic::{Request, Status};

use crate::sources::{Entitlements, SourceError};
use crate::store::NodeRecord;
use crate::tls_incoming::PeerInfo;

/// The verified SPIFFE ID of the caller, if it presented a certificate.
pub fn peer_id<T>(request: &Request<T>) -> Option<&SpiffeId> {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|peer| peer.id.as_ref())
}

/// The caller's address (tonic's `remote_addr` does not know our [`PeerInfo`]).
pub fn peer_addr<T>(request: &Request<T>) -> Option<std::net::SocketAddr> {
    request
        .extensions()
        .get::<PeerInfo>()
        .map(|peer| peer.remote)
}

/// Refuses every call of a caller whose certificate or identity was revoked after its
/// connection's handshake; the connection itself is closed too ([`crate::connections`]), this
/// closes the window in between.
pub fn refuse_revoked(
    bundle: SharedBundle,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        let Some(peer) = request.extensions().get::<PeerInfo>() else {
            return Ok(request);
        };
        let revocations = bundle.get();
        let revocations = revocations.revocations();
        let serial_revoked = peer
            .serial
            .as_deref()
            .is_some_and(|s| revocations.serial_revoked(s));
        let id_revoked = peer
            .id
            .as_ref()
            .is_some_and(|id| revocations.identity_revoked(id.as_str()));
        if serial_revoked || id_revoked {
            let who = peer
                .id
                .as_ref()
                .map_or("the caller".into(), |id| id.to_string());
            tracing::warn!(remote = %peer.remote, %who, "refused a call of a revoked caller");
            return Err(Status::permission_denied(format!(
                "{who}: its certificate or identity is revoked"
            )));
        }
        Ok(request)
    }
}

/// The calling node's name; other callers are refused.
pub fn require_node<T>(request: &Request<T>) -> Result<String, Status> {
    let id = peer_id(request)
        .ok_or_else(|| Status::unauthenticated("a node certificate is required for this call"))?;
    match id.kind() {
        IdKind::Node(name) => Ok(name.to_owned()),
        _ => Err(Status::permission_denied(format!(
            "{id} is not a node identity"
        ))),
    }
}

/// The calling administrator's name; other callers are refused.
pub fn require_admin<T>(request: &Request<T>) -> Result<String, Status> {
    let id = peer_id(request).ok_or_else(|| {
        Status::unauthenticated("an admin certificate is required (see `ferrule ca init`)")
    })?;
    match id.kind() {
        IdKind::Admin(name) => Ok(name.to_owned()),
        _ => Err(Status::permission_denied(format!(
            "{id} is not an admin identity"
        ))),
    }
}

/// Whether `node` may obtain `id`: always its own node identity, never another node's or a
/// control-plane or admin identity, and workload identities as the mode's source says.
pub fn entitled(
    source: &dyn Entitlements,
    node: &NodeRecord,
    id: &SpiffeId,
) -> Result<bool, SourceError> {
    match id.kind() {
        IdKind::Node(name) => Ok(name == node.name),
        IdKind::Workload { .. } => source.workload(node, id),
        _ => Ok(false),
    }
}
