//! The agent's answers to the CNI plugin: a new sandbox is enrolled before its containers start.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::runtime::reflector::ObjectRef;

use super::KubernetesPods;
use super::cgroup::find_pod_cgroup;
use super::pod_spec::{Placement, mode_of, pod_ips, pod_spec};
use crate::enroll::EnrollError;
use crate::enroll::cni::{CniAnswer, CniEvents, CniRequest, Readiness};

impl KubernetesPods {
    /// The pod named by the runtime, read fresh from the API (a sandbox is created right after
    /// the pod, and the watch may not have its latest annotations yet); the watch's copy only
    /// when the API cannot be reached.
    async fn pod_for(&self, req: &CniRequest) -> Result<Arc<Pod>, EnrollError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &req.namespace);
        let pod = match api.get_opt(&req.name).await {
            Ok(Some(pod)) => Arc::new(pod),
            Ok(None) => {
                return Err(EnrollError::Invalid(format!(
                    "pod {}/{} does not exist",
                    req.namespace, req.name
                )));
            }
            Err(e) => {
                let key = ObjectRef::new(&req.name).within(&req.namespace);
                self.pods.get(&key).ok_or_else(|| {
                    EnrollError::Internal(format!(
                        "reading pod {}/{}: {e}",
                        req.namespace, req.name
                    ))
                })?
            }
        };
        if pod.metadata.uid.as_deref() != Some(req.uid.as_str()) {
            return Err(EnrollError::Invalid(format!(
                "pod {}/{} has uid {:?}, the runtime said {}",
                req.namespace, req.name, pod.metadata.uid, req.uid
            )));
        }
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if node != Some(self.node.as_str()) {
            return Err(EnrollError::Forbidden(format!(
                "pod {}/{} is scheduled on {node:?}, not on this node ({})",
                req.namespace, req.name, self.node
            )));
        }
        Ok(pod)
    }

    /// The pod's namespace, fresh like the pod (its label decides the mode).
    async fn namespace_for(&self, name: &str) -> Result<Option<Arc<Namespace>>, EnrollError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get_opt(name).await {
            Ok(found) => Ok(found.map(Arc::new)),
            Err(e) => match self.namespace(name) {
                Some(ns) => Ok(Some(ns)),
                None => Err(EnrollError::Internal(format!(
                    "reading namespace {name}: {e}"
                ))),
            },
        }
    }
}

#[tonic::async_trait]
impl CniEvents for KubernetesPods {
    async fn add(&self, req: CniRequest) -> Result<CniAnswer, EnrollError> {
        let pod = self.pod_for(&req).await?;
        let namespace = self.namespace_for(&req.namespace).await?;
        let mode = match mode_of(&pod, namespace.as_deref(), self.settings.default_mode) {
            Ok(mode) => mode,
            Err(reason) => return Ok(CniAnswer::not_meshed(reason)),
        };
        let cgroup = find_pod_cgroup(&self.settings.cgroup_root, &req.uid).ok_or_else(|| {
            EnrollError::Internal(format!(
                "no cgroup for pod uid {} below {}",
                req.uid,
                self.settings.cgroup_root.display()
            ))
        })?;
        let ips = match req.ips.is_empty() {
            true => pod_ips(&pod),
            false => req.ips.clone(),
        };
        if ips.is_empty() {
            return Err(EnrollError::Invalid("no pod IP in prevResult".into()));
        }
        let placement = Placement {
            netns: req.netns.clone(),
            cgroup,
            ips,
        };
        let spec = pod_spec(&pod, mode, placement);
        let _one_at_a_time = self.ops.lock().await;
        let existing = self
            .manager
            .list()
            .into_iter()
            .find(|e| e.spec.uid == req.uid);
        if let Some(existing) = existing {
            let e = &existing.spec;
            if (&e.netns, &e.ips, e.mode) == (&spec.netns, &spec.ips, spec.mode) {
                return Ok(CniAnswer::meshed(mode)); // A retried ADD.
            }
            // A new sandbox for the same pod: the old network namespace is gone or going.
            self.manager.unenroll(&req.uid).await?;
        }
        let enrolled = self.manager.enroll(spec).await?;
        tracing::info!(uid = %req.uid, pod = %req.name, namespace = %req.namespace, id = %enrolled.spiffe_id, ?mode, "pod enrolled at sandbox creation");
        Ok(CniAnswer::meshed(mode))
    }

    async fn del(&self, req: CniRequest) -> Result<(), EnrollError> {
        let _one_at_a_time = self.ops.lock().await;
        let enrolled = self
            .manager
            .list()
            .into_iter()
            .find(|e| e.spec.uid == req.uid);
        // Only the sandbox being torn down takes the pod out; a stale DEL of an older sandbox
        // leaves the current one alone.
        if let Some(e) =
            enrolled.filter(|e| req.netns.as_os_str().is_empty() || e.spec.netns == req.netns)
        {
            self.manager.unenroll(&e.spec.uid).await?;
            tracing::info!(uid = %req.uid, pod = %req.name, "pod unenrolled at sandbox deletion");
        }
        Ok(())
    }

    async fn check(&self, req: CniRequest) -> Result<(), EnrollError> {
        let pod = self.pod_for(&req).await?;
        let namespace = self.namespace_for(&req.namespace).await?;
        let wanted = mode_of(&pod, namespace.as_deref(), self.settings.default_mode).ok();
        let enrolled = self
            .manager
            .list()
            .into_iter()
            .find(|e| e.spec.uid == req.uid);
        match (wanted, enrolled) {
            (None, None) => Ok(()),
            (Some(mode), Some(e)) if e.spec.mode == mode => Ok(()),
            (Some(_), None) => Err(EnrollError::Conflict(format!(
                "{} must be meshed but is not enrolled",
                req.uid
            ))),
            _ => Err(EnrollError::Conflict(format!(
                "{} is enrolled in another mode than it should be",
                req.uid
            ))),
        }
    }

    /// Waits for a round of the installer in progress, so it cannot chain the plugin again.
    async fn stop_installing(&self) {
        self.uninstalling.raise();
        let installer = self.lock_installer().take();
        if let Some(installer) = installer {
            let _ = installer.await;
        }
    }

    fn readiness(&self) -> Readiness {
        super::readiness::current(self)
    }
}
