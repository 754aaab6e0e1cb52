//! `Node.Join`: a node's credential and a CSR become the node's X.509-SVID. Which credential
//! proves a node is the mode's [`Attestor`](crate::sources::Attestor); the rest is the same.

use std::sync::Arc;

use ferrule_identity::SpiffeId;
use ferrule_identity::csr::verify_csr;
use ferrule_proto::v1::{self, node_server::Node};
use tonic::{Request, Response, Status};

use crate::pod_networks;
use crate::sources::{JoinRefusal, SourceError};
use crate::state::{ControlPlane, now, store_status, svid_proto};
use crate::store::NodeRecord;

/// How long a join over a rate limit waits for its refusal.
const RATE_LIMITED_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct NodeService(pub Arc<ControlPlane>);

impl NodeService {
    /// Logs and counts a refused join.
    fn refuse(
        &self,
        remote: Option<std::net::SocketAddr>,
        reason: JoinRefusal,
        status: Status,
    ) -> Status {
        let method = self.0.sources.attestor.method();
        self.0.metrics.join(method, Err(reason));
        tracing::warn!(?remote, method = method.as_str(), reason = reason.as_str(), error = %status.message(), "join refused");
        status
    }

    /// Counts a join over a rate limit; logged at debug only, as a flood would flood the log.
    fn rate_limited(&self, remote: Option<std::net::SocketAddr>, reason: JoinRefusal) -> Status {
        let method = self.0.sources.attestor.method();
        self.0.metrics.join(method, Err(reason));
        tracing::debug!(
            ?remote,
            reason = reason.as_str(),
            "join refused: rate limit"
        );
        Status::resource_exhausted(format!(
            "too many joins ({}: limits.join); retry later",
            reason.as_str()
        ))
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn join(
        &self,
        request: Request<v1::JoinRequest>,
    ) -> Result<Response<v1::JoinResponse>, Status> {
        let remote = crate::auth::peer_addr(&request);
        let cp = &self.0;
        // First, before any work: a flood must cost as little as possible.
        if let Err(reason) = cp.quotas.join(remote.map(|addr| addr.ip())) {
            // Answered late: a client that waits for answers floods at a fraction of the rate,
            // and one that does not runs into its connection's stream limit.
            tokio::time::sleep(RATE_LIMITED_DELAY).await;
            return Err(self.rate_limited(remote, reason));
        }
        let _slot = cp.quotas.join_slot(&cp.metrics).await;
        let body = request.into_inner();
        // Check the CSR before spending the credential: a broken agent must be able to retry.
        let csr = verify_csr(&body.csr).map_err(|e| {
            self.refuse(
                remote,
                JoinRefusal::InvalidCsr,
                Status::invalid_argument(e.to_string()),
            )
        })?;
        if !body.token.is_empty() && !body.service_account_token.is_empty() {
            return Err(self.refuse(
                remote,
                JoinRefusal::WrongCredential,
                Status::invalid_argument("set either token or service_account_token, not both"),
            ));
        }
        let attested = cp
            .sources
            .attestor
            .attest(&body)
            .await
            .map_err(|e: SourceError| self.refuse(remote, e.reason(), e.into()))?;
        let node = attested.node;
        let id = SpiffeId::node(&cp.trust_domain, &node)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if crate::revocations::identity_revoked(cp, id.as_str()) {
            return Err(self.refuse(
                remote,
                JoinRefusal::Revoked,
                Status::permission_denied(format!(
                    "node {node} is revoked; an operator must lift it first (ferrule revoke --lift --node {node})"
                )),
            ));
        }
        let nodes = cp.store.list_nodes().await.map_err(store_status)?;
        if let Some((other, theirs, ours)) =
            pod_networks::overlapping_node(&nodes, &node, &attested.pod_cidrs)
        {
            return Err(self.refuse(
                remote,
                JoinRefusal::PodCidrConflict,
                Status::failed_precondition(format!(
                    "pod CIDR {ours} of node {node} overlaps {theirs}, which node {other} joined with since the token was created"
                )),
            ));
        }
        let svid = cp
            .issue(&id, &csr.public_key_spki, cp.certificates.node_ttl, &node)
            .await?;
        cp.store
            .put_node(NodeRecord {
                name: node.clone(),
                spiffe_id: id.to_string(),
                allow: attested.allow,
                pod_cidrs: attested.pod_cidrs,
                joined_at: now(),
            })
            .await
            .map_err(store_status)?;
        let method = cp.sources.attestor.method();
        cp.metrics.join(method, Ok(()));
        tracing::info!(%node, ?remote, method = method.as_str(), evidence = %attested.evidence, "node joined");
        Ok(Response::new(v1::JoinResponse {
            spiffe_id: id.to_string(),
            svid: Some(svid_proto(&svid)),
            bundle: Some(cp.bundle_proto()),
        }))
    }
}
