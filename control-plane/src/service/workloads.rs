//! `Workloads`: nodes register the pods they run; every agent watches the directory.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use ferrule_identity::SpiffeId;
use ferrule_proto::v1::{self, workloads_server::Workloads};
use futures::Stream;
use futures::StreamExt;
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use crate::auth::{entitled, require_node};
use crate::state::{ControlPlane, now, store_status};
use crate::store::WorkloadRecord;

#[derive(Debug, Clone)]
pub struct WorkloadsService(pub Arc<ControlPlane>);

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 128
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl WorkloadsService {
    /// Checks the request and builds the record the control plane stores (node and ID are ours).
    async fn record(&self, node: &str, w: v1::Workload) -> Result<WorkloadRecord, Status> {
        let cp = &self.0;
        if !valid_uid(&w.uid) {
            return Err(Status::invalid_argument(format!(
                "uid {:?}: 1-128 of [A-Za-z0-9-_.]",
                w.uid
            )));
        }
        let id = SpiffeId::workload(&cp.trust_domain, &w.namespace, &w.service_account)
            .map_err(|e| Status::invalid_argument(format!("namespace/service account: {e}")))?;
        if w.ips.is_empty() {
            return Err(Status::invalid_argument("a workload needs at least one IP"));
        }
        for ip in &w.ips {
            ip.parse::<IpAddr>()
                .map_err(|e| Status::invalid_argument(format!("ip {ip:?}: {e}")))?;
        }
        let node_record = cp
            .store
            .get_node(node)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::permission_denied(format!("node {node} is not registered")))?;
        if !entitled(&node_record, &id) {
            return Err(Status::permission_denied(format!(
                "node {node} may not run {id}"
            )));
        }
        Ok(WorkloadRecord {
            uid: w.uid,
            name: w.name,
            namespace: w.namespace,
            service_account: w.service_account,
            spiffe_id: id.to_string(),
            node: node.to_owned(),
            ips: w.ips,
            registered_at: now(),
        })
    }
}

type DirectoryStream = Pin<Box<dyn Stream<Item = Result<v1::Directory, Status>> + Send>>;

#[tonic::async_trait]
impl Workloads for WorkloadsService {
    async fn register(
        &self,
        request: Request<v1::RegisterWorkloadRequest>,
    ) -> Result<Response<v1::RegisterWorkloadResponse>, Status> {
        let node = require_node(&request)?;
        let workload = request
            .into_inner()
            .workload
            .ok_or_else(|| Status::invalid_argument("workload is required"))?;
        let record = self.record(&node, workload).await?;
        let spiffe_id = record.spiffe_id.clone();
        let cp = &self.0;
        tracing::info!(%node, uid = %record.uid, id = %spiffe_id, ips = ?record.ips, "workload registered");
        let ((), version) = cp
            .directory
            .change(cp.store.as_ref(), cp.store.put_workload(record))
            .await
            .map_err(store_status)?;
        Ok(Response::new(v1::RegisterWorkloadResponse {
            spiffe_id,
            version,
        }))
    }

    async fn unregister(
        &self,
        request: Request<v1::UnregisterWorkloadRequest>,
    ) -> Result<Response<v1::UnregisterWorkloadResponse>, Status> {
        let node = require_node(&request)?;
        let uid = request.into_inner().uid;
        let cp = &self.0;
        let owner = cp
            .directory
            .subscribe()
            .borrow()
            .workloads
            .iter()
            .find(|w| w.uid == uid)
            .map(|w| w.node.clone());
        if owner.as_ref().is_some_and(|owner| owner != &node) {
            return Err(Status::permission_denied(format!(
                "workload {uid} runs on another node"
            )));
        }
        let (existed, version) = cp
            .directory
            .change(cp.store.as_ref(), cp.store.delete_workload(&uid))
            .await
            .map_err(store_status)?;
        tracing::info!(%node, %uid, existed, "workload unregistered");
        Ok(Response::new(v1::UnregisterWorkloadResponse {
            existed,
            version,
        }))
    }

    type WatchDirectoryStream = DirectoryStream;

    async fn watch_directory(
        &self,
        request: Request<v1::WatchDirectoryRequest>,
    ) -> Result<Response<Self::WatchDirectoryStream>, Status> {
        let node = require_node(&request)?;
        tracing::debug!(%node, "directory watch started");
        let mut closing = self.0.closing.clone();
        let closed = async move {
            let _ = closing.wait_for(|closing| *closing).await;
        };
        let stream = WatchStream::new(self.0.directory.subscribe())
            .map(|snapshot| Ok(snapshot.to_proto()))
            .take_until(Box::pin(closed));
        Ok(Response::new(Box::pin(stream)))
    }
}
