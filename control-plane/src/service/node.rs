//! `Node.Join`: a single-use token and a CSR become the node's X.509-SVID.

use std::sync::Arc;

use ferrule_identity::SpiffeId;
use ferrule_identity::csr::verify_csr;
use ferrule_proto::v1::{self, node_server::Node};
use tonic::{Request, Response, Status};

use crate::state::{ControlPlane, now, store_status, svid_proto};
use crate::store::{NodeRecord, TokenError};
use crate::token;

#[derive(Debug, Clone)]
pub struct NodeService(pub Arc<ControlPlane>);

#[tonic::async_trait]
impl Node for NodeService {
    async fn join(
        &self,
        request: Request<v1::JoinRequest>,
    ) -> Result<Response<v1::JoinResponse>, Status> {
        let remote = request.remote_addr();
        let body = request.into_inner();
        // Check the CSR before spending the token: a broken agent must be able to retry.
        let csr = verify_csr(&body.csr).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (token_id, secret_hash) =
            token::parse(&body.token).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let token = self
            .0
            .store
            .consume_token(&token_id, &secret_hash, now())
            .await
            .map_err(|e| match e {
                TokenError::Store(e) => store_status(e),
                refused => {
                    tracing::warn!(?remote, token_id, reason = %refused, "join refused");
                    Status::unauthenticated(refused.to_string())
                }
            })?;
        let cp = &self.0;
        let id = SpiffeId::node(&cp.trust_domain, &token.node)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if crate::revocations::identity_revoked(cp, id.as_str()) {
            tracing::warn!(node = %token.node, ?remote, "join refused: the node is revoked");
            return Err(Status::permission_denied(format!(
                "node {} is revoked; an operator must lift it first (ferrule revoke --lift --node {})",
                token.node, token.node
            )));
        }
        let svid = cp
            .issue(
                &id,
                &csr.public_key_spki,
                cp.certificates.node_ttl,
                &token.node,
            )
            .await?;
        cp.store
            .put_node(NodeRecord {
                name: token.node.clone(),
                spiffe_id: id.to_string(),
                allow: token.allow,
                joined_at: now(),
            })
            .await
            .map_err(store_status)?;
        tracing::info!(node = %token.node, ?remote, "node joined");
        Ok(Response::new(v1::JoinResponse {
            spiffe_id: id.to_string(),
            svid: Some(svid_proto(&svid)),
            bundle: Some(cp.bundle_proto()),
        }))
    }
}
