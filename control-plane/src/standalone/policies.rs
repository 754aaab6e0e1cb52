//! Policies applied through the admin API, written straight into the config store.

use ferrule_policy::Policy;
use ferrule_proto::v1;
use tonic::Status;

use crate::mesh_config::Change;
use crate::service::policy_resource;
use crate::sources::PolicyStore;
use crate::state::{ControlPlane, store_status};
use crate::store::ResourceKind;

#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigPolicies;

#[tonic::async_trait]
impl PolicyStore for ConfigPolicies {
    async fn apply(
        &self,
        cp: &ControlPlane,
        policies: Vec<Policy>,
    ) -> Result<v1::ApplyPoliciesResponse, Status> {
        let resources: Vec<v1::Resource> = policies.iter().map(policy_resource).collect();
        let changed: Vec<String> = resources
            .iter()
            .filter(|r| cp.config.get(ResourceKind::Policy, &r.key).as_ref() != Some(r))
            .map(|r| r.key.clone())
            .collect();
        let changes = resources.into_iter().map(Change::Put).collect();
        let version = cp
            .config
            .apply(cp.store.as_ref(), changes)
            .await
            .map_err(store_status)?;
        tracing::info!(?changed, version, "policies applied");
        Ok(v1::ApplyPoliciesResponse { version, changed })
    }

    async fn delete(
        &self,
        cp: &ControlPlane,
        keys: Vec<String>,
    ) -> Result<v1::DeletePoliciesResponse, Status> {
        if let Some(missing) = keys
            .iter()
            .find(|k| !cp.config.contains(ResourceKind::Policy, k))
        {
            return Err(Status::not_found(format!(
                "no policy {missing} (see `ferrule policy get`)"
            )));
        }
        let changes = keys
            .iter()
            .map(|k| Change::Remove(ResourceKind::Policy, k.clone()))
            .collect();
        let version = cp
            .config
            .apply(cp.store.as_ref(), changes)
            .await
            .map_err(store_status)?;
        tracing::info!(deleted = ?keys, version, "policies deleted");
        Ok(v1::DeletePoliciesResponse {
            version,
            deleted: keys,
        })
    }
}
