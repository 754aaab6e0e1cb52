//! `AuthorizationPolicy` objects as the source of policies. A watch over all of them brings
//! each valid object into the config store (objects in the control plane's own namespace are
//! mesh-wide) and marks it `Accepted=True`; an invalid one gets `Accepted=False` with the
//! field-level error the CLI prints, and changes nothing (a policy it replaced stays as it
//! was). Deleted objects remove their policy; a relist removes policies whose object is gone.
//! The admin API writes objects instead of the store ([`admin`]), so `ferrule policy apply`
//! goes through the same watch.

mod admin;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ferrule_policy::crd::{AuthorizationPolicy, AuthorizationPolicyStatus};
use ferrule_proto::v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinHandle;

use super::burst;
use crate::mesh_config::Change;
use crate::service::policy_resource;
use crate::state::ControlPlane;
use crate::store::ResourceKind;

pub use admin::CrdPolicies;

/// A failed config write is tried again after this long.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Policy(#[from] ferrule_policy::PolicyError),
    #[error(
        "the AuthorizationPolicy objects are written, but the control plane's watch has not brought them into the configuration within {0:?} (see `kubectl get authorizationpolicies -A`)"
    )]
    NotConverged(Duration),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::Api(kube::Error::Api(response)) if response.code == 422 => {
                tonic::Status::invalid_argument(e.to_string())
            }
            Error::Api(kube::Error::Api(response)) if response.code == 403 => {
                tonic::Status::permission_denied(e.to_string())
            }
            Error::Api(_) => tonic::Status::unavailable(e.to_string()),
            Error::Policy(_) => tonic::Status::invalid_argument(e.to_string()),
            Error::NotConverged(_) => tonic::Status::deadline_exceeded(e.to_string()),
        }
    }
}

/// The config key of the object `namespace/name` (`name` alone when mesh-wide).
pub fn key_of(object: &AuthorizationPolicy, mesh_wide_namespace: &str) -> String {
    let name = object.metadata.name.as_deref().unwrap_or_default();
    match object.metadata.namespace.as_deref() {
        Some(ns) if ns != mesh_wide_namespace => format!("{ns}/{name}"),
        _ => name.to_owned(),
    }
}

/// What one burst of events does: config changes by key (the last event of a key wins) and the
/// statuses to write.
#[derive(Debug, Default)]
struct Outcome {
    changes: BTreeMap<String, Option<v1::Resource>>,
    statuses: Vec<(String, String, AuthorizationPolicyStatus)>,
}

/// The watch's state between bursts.
struct PolicyWatch {
    cp: Arc<ControlPlane>,
    client: Client,
    mesh_wide: String,
    /// Keys of the objects listed so far while a relist is in progress.
    relisting: Option<BTreeSet<String>>,
}

impl PolicyWatch {
    fn event(&mut self, event: watcher::Event<AuthorizationPolicy>, out: &mut Outcome) {
        match event {
            watcher::Event::Init => self.relisting = Some(BTreeSet::new()),
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let key = key_of(&object, &self.mesh_wide);
                if let Some(listed) = self.relisting.as_mut() {
                    listed.insert(key.clone());
                }
                self.accept(&object, key, out);
            }
            watcher::Event::Delete(object) => {
                let key = key_of(&object, &self.mesh_wide);
                tracing::info!(policy = %key, "AuthorizationPolicy deleted");
                out.changes.insert(key, None);
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                for resource in self.cp.config.list(ResourceKind::Policy) {
                    if !listed.contains(&resource.key) && !out.changes.contains_key(&resource.key) {
                        tracing::info!(policy = %resource.key, "policy has no AuthorizationPolicy object any more; removing it");
                        out.changes.insert(resource.key, None);
                    }
                }
            }
        }
    }

    /// Validates the object: a valid one is put, an invalid one only reported.
    fn accept(&self, object: &AuthorizationPolicy, key: String, out: &mut Outcome) {
        let result = object.to_policy(&self.mesh_wide);
        match &result {
            Ok(policy) => {
                out.changes.insert(key, Some(policy_resource(policy)));
            }
            Err(e) => {
                tracing::warn!(policy = %key, error = %e, "AuthorizationPolicy is invalid; the configuration keeps what it had");
            }
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let status = AuthorizationPolicyStatus::accepted(
            object.status.as_ref(),
            object.metadata.generation,
            &result,
            now,
        );
        if object.status.as_ref() != Some(&status)
            && let (Some(ns), Some(name)) = (&object.metadata.namespace, &object.metadata.name)
        {
            out.statuses.push((ns.clone(), name.clone(), status));
        }
    }

    /// Writes the burst's config changes in one version, then the statuses.
    async fn apply(&self, out: &Outcome) -> Result<(), crate::store::StoreError> {
        let changes: Vec<Change> = out
            .changes
            .iter()
            .map(|(key, resource)| match resource {
                Some(resource) => Change::Put(resource.clone()),
                None => Change::Remove(ResourceKind::Policy, key.clone()),
            })
            .collect();
        if !changes.is_empty() {
            let before = self.cp.config.version();
            let version = self
                .cp
                .config
                .apply(self.cp.store.as_ref(), changes)
                .await?;
            if version != before {
                tracing::info!(version, "policies updated from AuthorizationPolicy objects");
            }
        }
        for (namespace, name, status) in &out.statuses {
            let api = Api::<AuthorizationPolicy>::namespaced(self.client.clone(), namespace);
            let patch = Patch::Merge(serde_json::json!({ "status": status }));
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &patch)
                .await
            {
                tracing::warn!(policy = %format!("{namespace}/{name}"), error = %e, "writing the AuthorizationPolicy status failed");
            }
        }
        Ok(())
    }
}

/// Watches `AuthorizationPolicy` objects in all namespaces until the task is aborted.
pub fn spawn(cp: Arc<ControlPlane>, client: Client, mesh_wide: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let api = Api::<AuthorizationPolicy>::all(client.clone());
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        let mut watch = PolicyWatch {
            cp,
            client,
            mesh_wide,
            relisting: None,
        };
        let mut pending = Outcome::default();
        let mut failed = false;
        while let Some(burst) = burst::next(&mut events, failed.then_some(RETRY)).await {
            for event in burst {
                match event {
                    Ok(event) => watch.event(event, &mut pending),
                    Err(e) => {
                        tracing::warn!(error = %e, "AuthorizationPolicy watch failed; retrying")
                    }
                }
            }
            failed = match watch.apply(&pending).await {
                Ok(()) => {
                    pending = Outcome::default();
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing policies from AuthorizationPolicy objects failed; retrying");
                    true
                }
            };
        }
    })
}
