//! Bringing the enrolled pods in line with the API: what should be meshed is enrolled (if its
//! sandbox runs), what was deleted, finished or opted out is unenrolled.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::cgroup::find_pod_cgroup;
use super::pod_spec::{Placement, mode_of, pod_ips, pod_spec};
use super::{KubernetesPods, RESYNC, procfs};
use crate::enroll::{EnrolledPod, Mode};

/// Reconciles on every watch event (coalesced) and every [`RESYNC`], once both watches listed.
pub async fn run(pods: Weak<KubernetesPods>) {
    {
        let Some(p) = pods.upgrade() else { return };
        if p.pods.wait_until_ready().await.is_err()
            || p.namespaces.wait_until_ready().await.is_err()
        {
            return;
        }
        p.synced.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(node = %p.node, pods = p.pods.state().len(), "Kubernetes pods listed");
    }
    loop {
        let Some(p) = pods.upgrade() else { return };
        reconcile(&p).await;
        let _ = tokio::time::timeout(RESYNC, p.changed.notified()).await;
        // Let a burst of events settle into one pass.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn reconcile(p: &KubernetesPods) {
    let _one_at_a_time = p.ops.lock().await;
    let enrolled: HashMap<String, EnrolledPod> = p
        .manager
        .list()
        .into_iter()
        .map(|e| (e.spec.uid.clone(), e))
        .collect();
    let desired = desired(p);
    for (uid, pod) in &enrolled {
        match desired.get(uid) {
            Some((_, mode)) if *mode == pod.spec.mode => {}
            Some(_) => unenroll(p, pod, "its mode changed").await,
            None => {
                if let Some(reason) = why_not_wanted(p, pod).await {
                    unenroll(p, pod, &reason).await;
                }
            }
        }
    }
    let enrolled: Vec<String> = p.manager.list().into_iter().map(|e| e.spec.uid).collect();
    let missing: Vec<_> = desired
        .into_iter()
        .filter(|(uid, (pod, _))| !enrolled.contains(uid) && !pod_ips(pod).is_empty())
        .collect();
    if missing.is_empty() {
        return;
    }
    let running = procfs::running_pods(&p.settings.proc_root);
    for (uid, (pod, mode)) in missing {
        let Some(netns) = running.get(&uid) else {
            continue; // No sandbox process yet: the CNI ADD will enroll it.
        };
        let Some(cgroup) = find_pod_cgroup(&p.settings.cgroup_root, &uid) else {
            tracing::warn!(%uid, root = %p.settings.cgroup_root.display(), "a running meshed pod has no cgroup below the cgroup root; not enrolled");
            continue;
        };
        let placement = Placement {
            netns: netns.clone(),
            cgroup,
            ips: pod_ips(&pod),
        };
        let spec = pod_spec(&pod, mode, placement);
        match p.manager.enroll(spec).await {
            Ok(e) => {
                tracing::info!(%uid, pod = %e.spec.name, id = %e.spiffe_id, "running pod enrolled from the API")
            }
            Err(e) => {
                tracing::warn!(%uid, error = %e, "enrolling a running pod failed; retrying on the next pass")
            }
        }
    }
}

/// Pods of this node that should be meshed, with their mode.
fn desired(p: &KubernetesPods) -> HashMap<String, (Arc<Pod>, Mode)> {
    let mut wanted = HashMap::new();
    for pod in p.pods.state() {
        let (Some(uid), Some(ns)) = (&pod.metadata.uid, &pod.metadata.namespace) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let namespace = p.namespace(ns);
        if let Ok(mode) = mode_of(&pod, namespace.as_deref(), p.settings.default_mode) {
            wanted.insert(uid.clone(), (pod.clone(), mode));
        }
    }
    wanted
}

/// Why an enrolled pod that the watch does not want should go; `None` if the watch only lags
/// behind (a pod the CNI plugin enrolled a moment ago), which a direct read settles.
async fn why_not_wanted(p: &KubernetesPods, enrolled: &EnrolledPod) -> Option<String> {
    let spec = &enrolled.spec;
    let api: Api<Pod> = Api::namespaced(p.client.clone(), &spec.namespace);
    match api.get_opt(&spec.name).await {
        Ok(Some(pod)) if pod.metadata.uid.as_deref() == Some(spec.uid.as_str()) => {
            if pod.metadata.deletion_timestamp.is_some() {
                return Some("the pod is being deleted".into());
            }
            let namespace = p.namespace(&spec.namespace);
            mode_of(&pod, namespace.as_deref(), p.settings.default_mode).err()
        }
        Ok(_) => Some("the pod was deleted".into()),
        Err(e) => {
            tracing::warn!(uid = %spec.uid, error = %e, "cannot confirm an enrolled pod with the API; keeping it");
            None
        }
    }
}

async fn unenroll(p: &KubernetesPods, pod: &EnrolledPod, reason: &str) {
    let (uid, name) = (&pod.spec.uid, &pod.spec.name);
    match p.manager.unenroll(uid).await {
        Ok(_) => tracing::info!(%uid, pod = %name, reason, "pod unenrolled"),
        Err(e) => tracing::warn!(%uid, pod = %name, reason, error = %e, "unenrolling a pod failed"),
    }
}
