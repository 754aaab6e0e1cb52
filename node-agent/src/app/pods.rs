//! The pod side of a running agent: eBPF capture loaded (or adopted from a previous agent), the
//! pod manager, the pods the previous agent had enrolled enrolled again, and the local
//! enrollment API.

use std::path::Path;
use std::sync::Arc;

use super::{Agent, AgentError};
use crate::capture::{Capture, CaptureConfig};
use crate::config::{Config, KubernetesSettings};
use crate::enroll::cni::CniEvents;
use crate::enroll::{self, EnrollError, PodLifecycle, PodSpec};
use crate::kubernetes::{KubernetesPods, serve_readiness};
use crate::lifecycle::private_socket;
use crate::limits::{ConnectionCaps, http_limits};
use crate::pods::{OUTBOUND_PORT, PodManager, STATE_FILE, Shared, spawn_revoked_tunnel_closer};
use crate::telemetry::Listener;

/// The pod side, serving.
pub struct Serving {
    /// The enrollment API; ends after `shutdown`.
    pub api: tokio::task::JoinHandle<()>,
    pub pods: Arc<PodManager>,
}

/// Loads capture, enrolls the pods a predecessor handed over (`inherited`) or, without one,
/// the remembered pods, and serves the enrollment API until `shutdown`.
pub async fn serve(
    config: &Config,
    agent: &Agent,
    inherited: Option<Vec<PodSpec>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Serving, AgentError> {
    let capture = Capture::load_or_adopt(&CaptureConfig {
        pin_dir: config.capture.pin_dir.clone(),
        outbound_port: OUTBOUND_PORT,
        excluded_ports: config.capture.excluded_ports.clone(),
        excluded_cidrs: config.capture.excluded_cidrs.clone(),
        program_version: config.capture.program_version,
    })
    .map_err(|e| AgentError::Capture(ferrule_config::process::error_chain(&e)))?;
    let capture = Arc::new(capture);
    let _ = agent.lifecycle_metrics.capture.set(capture.clone());
    let state_file = config.data_dir.as_ref().map(|d| d.join(STATE_FILE));
    let pool = PodManager::default_pool();
    spawn_revoked_tunnel_closer(
        pool.clone(),
        agent.mesh.clone(),
        agent.identities.bundle().clone(),
    );
    let manager = Arc::new(PodManager::new(
        Shared {
            trust_domain: config.trust_domain.clone(),
            capture: capture.clone(),
            identities: agent.identities.clone(),
            mesh: agent.mesh.clone(),
            bundle: agent.identities.bundle().clone(),
            pool,
            non_mesh: config.non_mesh,
            control: agent.channel.clone(),
            telemetry: agent.telemetry.clone(),
            listeners: agent.lifecycle.listeners.clone(),
            drain: agent.lifecycle.drain.clone(),
            limits: Arc::new(config.limits.clone()),
            caps: ConnectionCaps::new(&config.limits),
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
    match (inherited, &state_file) {
        (Some(specs), _) => take_over_all(manager.as_ref(), specs).await?,
        (None, Some(file)) => reenroll(manager.as_ref(), file).await,
        (None, None) => {}
    }
    let cni = match &config.kubernetes {
        Some(settings) => Some(kubernetes_pods(config, settings, manager.clone(), agent).await?),
        None => None,
    };
    let listeners = &agent.lifecycle.listeners;
    let listener = listeners
        .unix("enroll", || {
            private_socket::stream_listener(&config.enroll_socket)
        })
        .map_err(|e| AgentError::EnrollSocket {
            path: config.enroll_socket.display().to_string(),
            reason: e.to_string(),
        })?;
    for name in listeners.discard_unclaimed() {
        tracing::info!(listener = %name, "closed an inherited listener nothing uses any more");
    }
    tracing::info!(socket = %config.enroll_socket.display(), "enrollment API listening");
    let limits = http_limits(
        &config.limits,
        agent.telemetry.clone(),
        Listener::Enrollment,
    );
    let api = tokio::spawn(enroll::serve(
        listener,
        manager.clone(),
        cni,
        shutdown,
        limits,
    ));
    Ok(Serving { api, pods: manager })
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
        let bound = agent
            .lifecycle
            .listeners
            .node_tcp("readiness", addr)
            .and_then(|listener| {
                let limits =
                    http_limits(&config.limits, agent.telemetry.clone(), Listener::Readiness);
                let draining = agent.lifecycle.draining();
                serve_readiness(listener, Arc::downgrade(&pods), draining, limits)
            })
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
    enroll_all(manager, specs, "pod re-enrolled after restart").await;
}

/// Enrolls each pod, logging `done` or why it failed; returns the failures.
async fn enroll_all(
    manager: &PodManager,
    specs: Vec<PodSpec>,
    done: &str,
) -> Vec<(String, EnrollError)> {
    let mut failed = Vec::new();
    for spec in specs {
        let uid = spec.uid.clone();
        match manager.enroll(spec).await {
            Ok(_) => tracing::info!(%uid, "{done}"),
            Err(e) => {
                tracing::warn!(%uid, error = %e, "enrolling a known pod failed");
                failed.push((uid, e));
            }
        }
    }
    failed
}

/// Adopts every pod the running agent handed over. Failing any (the control plane unreachable,
/// say) aborts the takeover: our exit leaves the running agent serving, where saying `Serving`
/// would leave those pods with nobody. A pod that is gone (its netns could not be opened) does
/// not count: it needs no serving.
async fn take_over_all(manager: &PodManager, specs: Vec<PodSpec>) -> Result<(), AgentError> {
    let total = specs.len();
    let failed: Vec<_> = enroll_all(manager, specs, "pod taken over")
        .await
        .into_iter()
        .filter(|(_, e)| !matches!(e, EnrollError::Invalid(_)))
        .collect();
    match failed.first() {
        None => Ok(()),
        Some((uid, e)) => Err(AgentError::TakeOver {
            failed: failed.len(),
            total,
            first: format!("{uid}: {e}"),
        }),
    }
}
