//! `Identity.Sign`: certificates for the workloads a node is entitled to.

use std::sync::Arc;

use ferrule_identity::csr::verify_csr;
use ferrule_identity::{IdKind, SpiffeId};
use ferrule_proto::v1::{self, identity_server::Identity};
use tonic::{Request, Response, Status};

use crate::auth::{entitled, require_node};
use crate::limits::NodeCall;
use crate::revocations;
use crate::state::{ControlPlane, store_status, svid_proto};

#[derive(Debug, Clone)]
pub struct IdentityService(pub Arc<ControlPlane>);

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn sign(
        &self,
        request: Request<v1::SignRequest>,
    ) -> Result<Response<v1::SignResponse>, Status> {
        let node_name = require_node(&request)?;
        let cp = &self.0;
        cp.quotas
            .node_call(&cp.metrics, &node_name, NodeCall::Sign)?;
        let body = request.into_inner();
        let id = SpiffeId::parse(&body.spiffe_id)
            .map_err(|e| Status::invalid_argument(format!("spiffe_id: {e}")))?;
        refuse_unshaped(cp, &node_name, &id)?;
        let node = cp
            .store
            .get_node(&node_name)
            .await
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::permission_denied(format!("node {node_name} is not registered"))
            })?;
        let allowed = id.trust_domain_str() == cp.trust_domain.as_str()
            && entitled(cp.sources.entitlements.as_ref(), &node, &id).inspect_err(|e| {
                tracing::warn!(node = %node_name, %id, error = %e, "cannot decide a certificate request yet");
            })?;
        if !allowed {
            cp.metrics.csr(&node_name, false);
            tracing::warn!(node = %node_name, %id, "certificate request outside the node's allowance");
            return Err(Status::permission_denied(format!(
                "node {node_name} may not obtain {id}"
            )));
        }
        for revoked in [id.as_str(), node.spiffe_id.as_str()] {
            if revocations::identity_revoked(cp, revoked) {
                cp.metrics.csr(&node_name, false);
                tracing::warn!(node = %node_name, %id, revoked, "certificate request for a revoked identity");
                return Err(Status::permission_denied(format!(
                    "{revoked} is revoked: no certificates until an operator lifts it (ferrule revoke --lift)"
                )));
            }
        }
        let csr =
            verify_csr(&body.csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        let ttl = match id.kind() {
            IdKind::Node(_) => cp.certificates.node_ttl,
            _ => cp.certificates.workload_ttl,
        };
        let svid = cp.issue(&id, &csr.public_key_spki, ttl, &node_name).await?;
        cp.metrics.csr(&node_name, true);
        Ok(Response::new(v1::SignResponse {
            svid: Some(svid_proto(&svid)),
            bundle: Some(cp.bundle_proto()),
        }))
    }
}

/// Agents ask for their node's identity and for workload identities
/// (`/ns/<namespace>/sa/<service-account>`), nothing else: a broad allowance must not mint IDs
/// of another shape that policies or peers might read differently. Reserved identities
/// (control plane, admins) are well-formed but never entitled: `PERMISSION_DENIED` later.
fn refuse_unshaped(cp: &ControlPlane, node_name: &str, id: &SpiffeId) -> Result<(), Status> {
    if !matches!(id.kind(), IdKind::Other) {
        return Ok(());
    }
    cp.metrics.csr(node_name, false);
    tracing::warn!(node = %node_name, %id, "certificate request for an identity that is not workload-shaped");
    Err(Status::invalid_argument(unshaped_message(id)))
}

fn unshaped_message(id: &SpiffeId) -> String {
    format!(
        "{id} is not a workload identity: workload certificates are issued only for \
         spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standalone::AllowPatterns;
    use crate::store::NodeRecord;

    fn node(allow: &[&str]) -> NodeRecord {
        NodeRecord {
            name: "n1".into(),
            spiffe_id: "spiffe://example.org/node/n1".into(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            pod_cidrs: vec![],
            joined_at: 0,
        }
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn entitled(node: &NodeRecord, id: &SpiffeId) -> bool {
        crate::auth::entitled(&AllowPatterns, node, id).unwrap()
    }

    #[test]
    fn node_gets_own_identity_and_allowed_workloads_only() {
        let n = node(&["spiffe://example.org/ns/shop/sa/*"]);
        assert!(entitled(&n, &id("spiffe://example.org/node/n1")));
        assert!(entitled(&n, &id("spiffe://example.org/ns/shop/sa/web")));
        assert!(!entitled(&n, &id("spiffe://example.org/ns/bank/sa/web")));
        assert!(!entitled(&n, &id("spiffe://example.org/node/n2")));
        // Even a broad pattern never grants control-plane or admin identities.
        let broad = node(&["spiffe://example.org/*"]);
        assert!(!entitled(
            &broad,
            &id("spiffe://example.org/ferrule/admin/admin")
        ));
        assert!(!entitled(
            &broad,
            &id("spiffe://example.org/ferrule/control-plane")
        ));
        assert!(!entitled(&broad, &id("spiffe://example.org/node/n2")));
    }

    /// Issue 12 finding 3: with `*` crossing `/`, a node allowed `ns/a/*` obtained
    /// `ns/a/sa/x/sa/web`; now the pattern stops at one segment and the CA refuses any workload
    /// ID that is not `/ns/<namespace>/sa/<service-account>`.
    #[test]
    fn workload_ids_must_be_workload_shaped() {
        let smuggled = id("spiffe://example.org/ns/a/sa/x/sa/web");
        for allow in [
            "spiffe://example.org/ns/a/*",
            "spiffe://example.org/ns/a/sa/*",
        ] {
            assert!(!entitled(&node(&[allow]), &smuggled), "{allow}");
        }
        let other = id("spiffe://example.org/svc/web");
        assert!(!entitled(&node(&["spiffe://example.org/*"]), &other));
        let message = unshaped_message(&smuggled);
        assert!(
            message.contains("is not a workload identity")
                && message.contains("/ns/<namespace>/sa/<service-account>"),
            "{message}"
        );
    }
}
