//! The pod side of a running agent: eBPF capture loaded (or adopted from a previous agent), the
//! pod manager, the pods the previous agent had enrolled enrolled again, and the local
//! enrollment API.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;

use super::{Agent, AgentError};
use crate::capture::{Capture, CaptureConfig};
use crate::config::{Config, KubernetesSettings};
use crate::enroll::cni::CniEvents;
use crate::enroll::{self, PodLifecycle, PodSpec};
use crate::kubernetes::{KubernetesPods, serve_readiness};
use crate::pods::{OUTBOUND_PORT, PodManager, STATE_FILE, Shared, spawn_revoked_tunnel_closer};

/// Loads capture, re-enrolls remembered pods and serves the enrollment API until `shutdown`.
pub async fn serve(
    config: &Config,
    agent: &Agent,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    let capture = Capture::load_or_adopt(&CaptureConfig {
        pin_dir: config.capture.pin_dir.clone(),
        outbound_port: OUTBOUND_PORT,
        excluded_ports: config.capture.excluded_ports.clone(),
        excluded_cidrs: config.capture.excluded_cidrs.clone(),
    })
    .map_err(|e| AgentError::Capture(ferrule_config::process::error_chain(&e)))?;
    let state_file = config.data_dir.as_ref().map(|d| d.join(STATE_FILE));
    let pool = PodManager::default_pool();
    spawn_revoked_tunnel_closer(pool.clone(), agent.mesh.clone());
    let manager = Arc::new(PodManager::new(
        Shared {
            trust_domain: config.trust_domain.clone(),
            capture: Arc::new(capture),
            identities: agent.identities.clone(),
            mesh: agent.mesh.clone(),
            bundle: agent.identities.bundle().clone(),
            pool,
            non_mesh: config.non_mesh,
            control: agent.channel.clone(),
            telemetry: agent.telemetry.clone(),
        },
        state_file.clone(),
    ));
    let counts = Arc::downgrade(&manager);
    let _ = agent.plaintext_counts.set(Arc::new(move || {
        counts
            .upgrade()
            .map(|m| m.plaintext_counts())
            .unwrap_or_default()
    }));
    if let Some(file) = &state_file {
        reenroll(manager.as_ref(), file).await;
    }
    let cni = match &config.kubernetes {
        Some(settings) => Some(kubernetes_pods(config, settings, manager.clone(), agent).await?),
        None => None,
    };
    let listener = bind_socket(&config.enroll_socket)?;
    tracing::info!(socket = %config.enroll_socket.display(), "enrollment API listening");
    Ok(tokio::spawn(enroll::serve(
        listener, manager, cni, shutdown,
    )))
}

/// Kubernetes mode: pods from the API and the CNI plugin, and the readiness probe.
async fn kubernetes_pods(
    config: &Config,
    settings: &KubernetesSettings,
    manager: Arc<PodManager>,
    agent: &Agent,
) -> Result<Arc<dyn CniEvents>, AgentError> {
    let uninstalling = manager.uninstall_signal();
    let pods = KubernetesPods::start(
        config.node_name.as_deref(),
        settings.clone(),
        manager,
        agent.mesh.clone(),
        uninstalling,
    )
    .await
    .map_err(|e| AgentError::Kubernetes(ferrule_config::process::error_chain(&e)))?;
    if let Some(addr) = settings.readiness_listen {
        let bound = serve_readiness(addr, Arc::downgrade(&pods))
            .await
            .map_err(|e| AgentError::Kubernetes(format!("readiness listener {addr}: {e}")))?;
        tracing::info!(addr = %bound, "readiness probe listening on /ready");
    }
    Ok(pods)
}

/// Pods enrolled before an agent restart get their listeners back (capture stayed attached).
async fn reenroll(manager: &PodManager, file: &Path) {
    let Ok(text) = std::fs::read(file) else {
        return;
    };
    let specs: Vec<PodSpec> = match serde_json::from_slice(&text) {
        Ok(specs) => specs,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "ignoring unreadable pod list");
            return;
        }
    };
    for spec in specs {
        let uid = spec.uid.clone();
        match manager.enroll(spec).await {
            Ok(_) => tracing::info!(%uid, "pod re-enrolled after restart"),
            Err(e) => tracing::warn!(%uid, error = %e, "re-enrolling a pod failed"),
        }
    }
}

/// A root-only socket; a stale one from a previous agent is replaced.
fn bind_socket(path: &PathBuf) -> Result<UnixListener, AgentError> {
    let io = |e: std::io::Error| AgentError::EnrollSocket {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}
