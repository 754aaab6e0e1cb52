//! `Admin`: operator calls, authorized by an admin certificate.

use std::sync::Arc;
use std::time::Duration;

use ferrule_identity::{IdPattern, SpiffeId};
use ferrule_proto::v1::{self, admin_server::Admin};
use ipnet::IpNet;
use tonic::{Request, Response, Status};

pub(crate) mod policies;
mod revoke;

use crate::auth::require_admin;
use crate::sources::JoinMethod;
use crate::state::{ControlPlane, now, store_status};
use crate::{pod_networks, token};

const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct AdminService(pub Arc<ControlPlane>);

impl AdminService {
    fn validate_token_request(
        &self,
        body: &v1::CreateJoinTokenRequest,
    ) -> Result<Duration, Status> {
        let cp = &self.0;
        SpiffeId::node(&cp.trust_domain, &body.node)
            .map_err(|e| Status::invalid_argument(format!("node name {:?}: {e}", body.node)))?;
        for pattern in &body.allow {
            let parsed = IdPattern::parse_workload(pattern)
                .map_err(|e| Status::invalid_argument(format!("allow {pattern:?}: {e}")))?;
            if parsed.trust_domain_str() != cp.trust_domain.as_str() {
                return Err(Status::invalid_argument(format!(
                    "allow {pattern:?}: not in trust domain {}",
                    cp.trust_domain
                )));
            }
        }
        let ttl = match body.ttl_seconds {
            0 => DEFAULT_TOKEN_TTL,
            s => Duration::from_secs(s),
        };
        if ttl > cp.max_join_token_ttl {
            return Err(Status::invalid_argument(format!(
                "ttl {}s exceeds the maximum of {}s",
                ttl.as_secs(),
                cp.max_join_token_ttl.as_secs()
            )));
        }
        Ok(ttl)
    }

    /// The token's pod networks, refused if another node already owns part of them.
    async fn pod_networks_of(
        &self,
        body: &v1::CreateJoinTokenRequest,
    ) -> Result<Vec<IpNet>, Status> {
        let nets = pod_networks::parse(&body.pod_cidrs)?;
        let nodes = self.0.store.list_nodes().await.map_err(store_status)?;
        match pod_networks::overlapping_node(&nodes, &body.node, &nets) {
            Some((other, theirs, ours)) => Err(Status::failed_precondition(format!(
                "pod CIDR {ours} overlaps {theirs} of node {other}; remove that node first \
                 (ferrule node remove {other}) or pick another range"
            ))),
            None => Ok(nets),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_join_token(
        &self,
        request: Request<v1::CreateJoinTokenRequest>,
    ) -> Result<Response<v1::CreateJoinTokenResponse>, Status> {
        let admin = require_admin(&request)?;
        if self.0.sources.attestor.method() != JoinMethod::JoinToken {
            return Err(Status::failed_precondition(
                "this control plane runs in Kubernetes mode: nodes attest with their agent's                  service account token, and join tokens would be refused",
            ));
        }
        let body = request.into_inner();
        let ttl = self.validate_token_request(&body)?;
        let node_id = SpiffeId::node(&self.0.trust_domain, &body.node)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if crate::revocations::identity_revoked(&self.0, node_id.as_str()) {
            return Err(Status::failed_precondition(format!(
                "node {} is revoked; lift it first (ferrule revoke --lift --node {})",
                body.node, body.node
            )));
        }
        let pod_cidrs = self.pod_networks_of(&body).await?;
        let (token, record) = token::generate(&body.node, body.allow, pod_cidrs, ttl, now());
        let expires_at = record.expires_at as i64;
        tracing::info!(%admin, node = %body.node, token_id = %record.id, pod_cidrs = ?record.pod_cidrs, "join token created");
        self.0
            .store
            .create_token(record)
            .await
            .map_err(store_status)?;
        Ok(Response::new(v1::CreateJoinTokenResponse {
            token,
            expires_at,
        }))
    }

    async fn list_nodes(
        &self,
        request: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        require_admin(&request)?;
        let nodes = self.0.store.list_nodes().await.map_err(store_status)?;
        let nodes = nodes
            .into_iter()
            .map(|n| v1::NodeInfo {
                name: n.name,
                spiffe_id: n.spiffe_id,
                allow: n.allow,
                joined_at: n.joined_at as i64,
                pod_cidrs: n.pod_cidrs.iter().map(IpNet::to_string).collect(),
            })
            .collect();
        Ok(Response::new(v1::ListNodesResponse { nodes }))
    }

    async fn list_certificates(
        &self,
        request: Request<v1::ListCertificatesRequest>,
    ) -> Result<Response<v1::ListCertificatesResponse>, Status> {
        require_admin(&request)?;
        let node = request.into_inner().node;
        let node = (!node.is_empty()).then_some(node.as_str());
        let records = self
            .0
            .store
            .list_certificates(node)
            .await
            .map_err(store_status)?;
        let revoked = crate::revocations::list(&self.0);
        let certificates = records
            .into_iter()
            .map(|r| v1::CertificateRecord {
                revoked: revoked.serial_revoked(&r.serial)
                    || revoked.identity_revoked(&r.spiffe_id),
                serial: r.serial,
                spiffe_id: r.spiffe_id,
                node: r.node,
                not_before: r.not_before as i64,
                not_after: r.not_after as i64,
            })
            .collect();
        Ok(Response::new(v1::ListCertificatesResponse { certificates }))
    }

    async fn apply_policies(
        &self,
        request: Request<v1::ApplyPoliciesRequest>,
    ) -> Result<Response<v1::ApplyPoliciesResponse>, Status> {
        require_admin(&request)?;
        policies::apply(&self.0, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_policies(
        &self,
        request: Request<v1::ListPoliciesRequest>,
    ) -> Result<Response<v1::ListPoliciesResponse>, Status> {
        require_admin(&request)?;
        Ok(Response::new(policies::list(&self.0)))
    }

    async fn delete_policies(
        &self,
        request: Request<v1::DeletePoliciesRequest>,
    ) -> Result<Response<v1::DeletePoliciesResponse>, Status> {
        require_admin(&request)?;
        policies::delete(&self.0, request.into_inner().keys)
            .await
            .map(Response::new)
    }

    async fn revoke(
        &self,
        request: Request<v1::RevokeRequest>,
    ) -> Result<Response<v1::RevokeResponse>, Status> {
        let admin = require_admin(&request)?;
        revoke::revoke(&self.0, &admin, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_revocations(
        &self,
        request: Request<v1::ListRevocationsRequest>,
    ) -> Result<Response<v1::ListRevocationsResponse>, Status> {
        require_admin(&request)?;
        Ok(Response::new(revoke::list(&self.0)))
    }

    async fn remove_node(
        &self,
        request: Request<v1::RemoveNodeRequest>,
    ) -> Result<Response<v1::RemoveNodeResponse>, Status> {
        let admin = require_admin(&request)?;
        revoke::remove_node(&self.0, &admin, request.into_inner().node)
            .await
            .map(Response::new)
    }

    async fn explain(
        &self,
        request: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        require_admin(&request)?;
        policies::explain(&self.0, request.into_inner()).map(Response::new)
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        require_admin(&request)?;
        Ok(Response::new(revoke::status(&self.0).await))
    }
}
