//! The admin API's policy calls in Kubernetes mode: `ferrule policy apply` creates or replaces
//! `AuthorizationPolicy` objects and `ferrule policy delete` deletes them; the watch brings the
//! change into the configuration, and the call answers once it has (or says that it has not).

use std::time::Duration;

use ferrule_policy::Policy;
use ferrule_policy::crd::AuthorizationPolicy;
use ferrule_proto::v1;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use tonic::Status;

use super::{Error, key_of};
use crate::service::policy_resource;
use crate::sources::PolicyStore;
use crate::state::ControlPlane;
use crate::store::ResourceKind;

/// How long a call waits for the watch to bring its change into the configuration.
const CONVERGE: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct CrdPolicies {
    pub client: Client,
    /// The control plane's namespace: mesh-wide policies' objects live there.
    pub mesh_wide: String,
}

impl std::fmt::Debug for CrdPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdPolicies")
            .field("mesh_wide", &self.mesh_wide)
            .finish_non_exhaustive()
    }
}

impl CrdPolicies {
    fn api(&self, namespace: &str) -> Api<AuthorizationPolicy> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates the object, or replaces the one of that name.
    async fn write(&self, object: &AuthorizationPolicy) -> Result<(), Error> {
        let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
        let name = object.metadata.name.as_deref().unwrap_or_default();
        let api = self.api(namespace);
        match api.create(&PostParams::default(), object).await {
            Err(kube::Error::Api(response)) if response.code == 409 => {
                let existing = api.get(name).await?;
                let mut replacement = object.clone();
                replacement.metadata.resource_version = existing.metadata.resource_version;
                api.replace(name, &PostParams::default(), &replacement)
                    .await?;
                Ok(())
            }
            result => result.map(drop).map_err(Error::from),
        }
    }

    /// The namespace and name of the object behind a policy key.
    fn object_of<'a>(&'a self, key: &'a str) -> (&'a str, &'a str) {
        key.split_once('/')
            .unwrap_or((self.mesh_wide.as_str(), key))
    }
}

/// Waits until `done` holds for the configuration; returns its version.
async fn converge(cp: &ControlPlane, done: impl Fn(&ControlPlane) -> bool) -> Result<u64, Error> {
    let mut versions = cp.config.subscribe();
    let waiting = async {
        loop {
            if done(cp) {
                return cp.config.version();
            }
            if versions.changed().await.is_err() {
                return cp.config.version();
            }
        }
    };
    tokio::time::timeout(CONVERGE, waiting)
        .await
        .map_err(|_| Error::NotConverged(CONVERGE))
}

#[tonic::async_trait]
impl PolicyStore for CrdPolicies {
    async fn apply(
        &self,
        cp: &ControlPlane,
        policies: Vec<Policy>,
    ) -> Result<v1::ApplyPoliciesResponse, Status> {
        // Every object is built before any is written: one that cannot be refuses the call.
        let objects = policies
            .iter()
            .map(|p| AuthorizationPolicy::from_policy(p, &self.mesh_wide))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::from)?;
        let wanted: Vec<v1::Resource> = policies.iter().map(policy_resource).collect();
        let changed: Vec<String> = wanted
            .iter()
            .filter(|r| cp.config.get(ResourceKind::Policy, &r.key).as_ref() != Some(*r))
            .map(|r| r.key.clone())
            .collect();
        for object in &objects {
            self.write(object).await?;
            tracing::info!(policy = %key_of(object, &self.mesh_wide), "AuthorizationPolicy written");
        }
        let version = converge(cp, |cp| {
            wanted
                .iter()
                .all(|r| cp.config.get(ResourceKind::Policy, &r.key).as_ref() == Some(r))
        })
        .await?;
        Ok(v1::ApplyPoliciesResponse { version, changed })
    }

    async fn delete(
        &self,
        cp: &ControlPlane,
        keys: Vec<String>,
    ) -> Result<v1::DeletePoliciesResponse, Status> {
        for key in &keys {
            let (namespace, name) = self.object_of(key);
            if self
                .api(namespace)
                .get_opt(name)
                .await
                .map_err(Error::from)?
                .is_none()
            {
                return Err(Status::not_found(format!(
                    "no policy {key}: no AuthorizationPolicy {namespace}/{name} (see `ferrule policy get`)"
                )));
            }
        }
        for key in &keys {
            let (namespace, name) = self.object_of(key);
            match self
                .api(namespace)
                .delete(name, &DeleteParams::default())
                .await
            {
                Err(kube::Error::Api(response)) if response.code == 404 => {}
                result => {
                    result.map_err(Error::from)?;
                }
            }
            tracing::info!(policy = %key, "AuthorizationPolicy deleted");
        }
        let version = converge(cp, |cp| {
            keys.iter()
                .all(|k| !cp.config.contains(ResourceKind::Policy, k))
        })
        .await?;
        Ok(v1::DeletePoliciesResponse {
            version,
            deleted: keys,
        })
    }
}
