//! Readiness (the kubelet's probe and the CNI plugin's STATUS) and the node's startup taint.

use std::net::SocketAddr;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use ferrule_config::kubernetes::NOT_READY_TAINT;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::KubernetesPods;
use crate::enroll::cni::Readiness;

/// Ready once capture is loaded (it is before this module runs), the pods are listed, the CNI
/// plugin is installed and the first configuration version is applied.
pub fn current(p: &KubernetesPods) -> Readiness {
    let mut missing = Vec::new();
    if !p.synced.load(Ordering::Relaxed) {
        missing.push("pods of this node not listed from the API yet".to_owned());
    }
    if !p.cni_installed.load(Ordering::Relaxed) {
        missing.push("CNI plugin not installed".to_owned());
    }
    if p.mesh.version() == 0 {
        missing.push("no mesh configuration applied yet".to_owned());
    }
    Readiness {
        ready: missing.is_empty(),
        missing,
    }
}

/// `GET /ready` on `listener` (node network) for the kubelet's readiness probe, until
/// `shutdown` (the agent drains: its successor answers on the same socket).
pub fn serve_readiness(
    listener: tokio::net::TcpListener,
    pods: Weak<KubernetesPods>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ferrule_config::http::ServeLimits,
) -> std::io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let respond = move |_: hyper::Request<hyper::body::Incoming>| {
        let readiness = pods.upgrade().map(|p| current(&p)).unwrap_or_default();
        let (status, body) = match readiness.ready {
            true => (StatusCode::OK, "ready\n".to_owned()),
            false => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", readiness.missing.join("; ")),
            ),
        };
        let reply = Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid");
        std::future::ready(reply)
    };
    tokio::spawn(ferrule_config::http::serve_limited(
        listener,
        "readiness",
        respond,
        shutdown,
        limits,
    ));
    Ok(bound)
}

/// Takes `ferrule.io/agent-not-ready` off this node once the agent is ready, so the scheduler
/// only then places pods here.
pub async fn remove_taint_when_ready(pods: Weak<KubernetesPods>) {
    let mut delay = Duration::from_millis(200);
    loop {
        tokio::time::sleep(delay).await;
        let Some(p) = pods.upgrade() else { return };
        if !current(&p).ready {
            continue;
        }
        match remove_taint(&p).await {
            Ok(removed) => {
                p.taint_removed.store(true, Ordering::Relaxed);
                tracing::info!(node = %p.node, removed, "agent ready; node startup taint cleared");
                return;
            }
            Err(e) => {
                tracing::warn!(node = %p.node, error = %e, "cannot remove the startup taint; retrying");
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Whether the taint was there. The patch carries the resourceVersion read, so a concurrent
/// change to the taints (another controller) makes it fail and it is retried on fresh data.
async fn remove_taint(p: &KubernetesPods) -> Result<bool, kube::Error> {
    let nodes: Api<Node> = Api::all(p.client.clone());
    let node = nodes.get(&p.node).await?;
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let kept: Vec<_> = taints
        .iter()
        .filter(|t| t.key != NOT_READY_TAINT)
        .cloned()
        .collect();
    if kept.len() == taints.len() {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": node.metadata.resource_version},
        "spec": {"taints": if kept.is_empty() { serde_json::Value::Null } else { serde_json::to_value(&kept).unwrap_or_default() }},
    });
    nodes
        .patch(&p.node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(true)
}
