//! Who is calling: derived only from the client certificate verified during the TLS handshake.

use ferrule_identity::{IdKind, IdPattern, SpiffeId};
use tonic::{Request, Status};

use crate::store::NodeRecord;
use crate::tls_incoming::PeerInfo;

/// The verified SPIFFE ID of the caller, if it presented a certificate.
pub fn peer_id<T>(request: &Request<T>) -> Option<&SpiffeId> {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|peer| peer.id.as_ref())
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

/// A node may renew its own identity and obtain those its join token allowed.
pub fn entitled(node: &NodeRecord, id: &SpiffeId) -> bool {
    if id.kind() == IdKind::Node(&node.name) {
        return true;
    }
    if !matches!(id.kind(), IdKind::Workload { .. } | IdKind::Other) {
        return false;
    }
    node.allow
        .iter()
        .filter_map(|p| IdPattern::parse(p).ok())
        .any(|p| p.matches(id))
}
