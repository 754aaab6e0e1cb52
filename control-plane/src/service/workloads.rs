//! `Workloads`: nodes tell the control plane about the pods they run. What a claim does depends
//! on the mode's source ([`crate::sources::WorkloadClaims`]); the directory reaches every agent
//! through `Config.Watch`.

use std::sync::Arc;

use ferrule_proto::v1::{self, workloads_server::Workloads};
use tonic::{Request, Response, Status};

use crate::auth::require_node;
use crate::limits::NodeCall;
use crate::state::ControlPlane;
use crate::store::ResourceKind;

#[derive(Debug, Clone)]
pub struct WorkloadsService(pub Arc<ControlPlane>);

pub fn workload_resource(workload: v1::Workload) -> v1::Resource {
    v1::Resource {
        key: workload.uid.clone(),
        kind: Some(v1::resource::Kind::Workload(workload)),
    }
}

/// The workload with `uid` in the directory.
pub fn find_workload(cp: &ControlPlane, uid: &str) -> Option<v1::Workload> {
    cp.config
        .get(ResourceKind::Workload, uid)
        .and_then(workload_of)
}

/// Every workload in the directory.
pub fn workloads(cp: &ControlPlane) -> impl Iterator<Item = v1::Workload> + use<> {
    cp.config
        .list(ResourceKind::Workload)
        .into_iter()
        .filter_map(workload_of)
}

fn workload_of(resource: v1::Resource) -> Option<v1::Workload> {
    match resource.kind {
        Some(v1::resource::Kind::Workload(w)) => Some(w),
        _ => None,
    }
}

#[tonic::async_trait]
impl Workloads for WorkloadsService {
    async fn register(
        &self,
        request: Request<v1::RegisterWorkloadRequest>,
    ) -> Result<Response<v1::RegisterWorkloadResponse>, Status> {
        let node = require_node(&request)?;
        let cp = &self.0;
        cp.quotas
            .node_call(&cp.metrics, &node, NodeCall::Register)?;
        let workload = request
            .into_inner()
            .workload
            .ok_or_else(|| Status::invalid_argument("workload is required"))?;
        let claims = cp.sources.workloads.clone();
        claims
            .register(cp, &node, workload)
            .await
            .map(Response::new)
    }

    async fn unregister(
        &self,
        request: Request<v1::UnregisterWorkloadRequest>,
    ) -> Result<Response<v1::UnregisterWorkloadResponse>, Status> {
        let node = require_node(&request)?;
        let uid = request.into_inner().uid;
        let cp = &self.0;
        let claims = cp.sources.workloads.clone();
        claims.unregister(cp, &node, &uid).await.map(Response::new)
    }
}
