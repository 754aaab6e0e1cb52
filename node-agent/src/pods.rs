//! Enrolled pods: what the agent does when a pod joins the mesh, and undoes when it leaves.
//! Enrolling registers the pod with the control plane, obtains its identity's certificate, opens
//! the in-pod listeners (outbound 15001, inbound HBONE 15008) inside the pod's network namespace,
//! and attaches the eBPF capture to its cgroup.

mod inbound;
mod outbound;
pub mod peers;
mod uninstall;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrule_identity::tls::{self, CertSlot, SpiffeClientVerifier};
use ferrule_identity::{SharedBundle, SpiffeId, TrustBundle, TrustDomain};
use ferrule_proto::v1::{self, workloads_client::WorkloadsClient};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::capture::{Capture, InboundMode, PodCapture};
use crate::config::{Limits, NonMesh};
use crate::enroll::{EnrollError, EnrolledPod, Mode, PodLifecycle, PodSpec, UninstallAnswer};
use crate::identity::IdentityManager;
use crate::lifecycle::{self, Drain, Listeners, handover::Handing};
use crate::limits::ConnectionCaps;
use crate::mesh_config::MeshConfig;
use crate::netns::Netns;
use crate::proxy::{PoolConfig, TunnelPool};
use crate::telemetry::Listener;

/// The enrolled pods' specs, in the agent's `data_dir`: what a restarted agent enrolls again.
pub const STATE_FILE: &str = "pods.json";
pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PORT: u16 = 15008;
/// How long enrollment waits for the pod's first certificate.
const CERT_WAIT: Duration = Duration::from_secs(15);

/// What every pod's proxies share.
pub struct Shared {
    pub trust_domain: TrustDomain,
    pub capture: Arc<Capture>,
    pub identities: IdentityManager,
    pub mesh: MeshConfig,
    pub bundle: SharedBundle,
    pub pool: TunnelPool,
    pub non_mesh: NonMesh,
    pub control: Channel,
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Every listener, to hand to a successor; and those inherited from a predecessor.
    pub listeners: Arc<Listeners>,
    pub drain: Drain,
    pub limits: Arc<Limits>,
    /// Open connections of all pods' listeners, against `limits`.
    pub caps: Arc<ConnectionCaps>,
}

struct Pod {
    enrolled: EnrolledPod,
    id: SpiffeId,
    cookie: u64,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Closing the listeners: the tasks own them.
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

pub struct PodManager {
    shared: Arc<Shared>,
    pods: Mutex<HashMap<String, Pod>>,
    /// Where the enrolled pods' specs are kept so a restarted agent serves them again.
    state_file: Option<PathBuf>,
    /// Enrollments and unenrollments hold it shared; a handover takes it exclusively, so it
    /// sees no change half done.
    gate: tokio::sync::RwLock<()>,
    /// Set while a successor takes over (and for good once it did).
    handing_over: std::sync::atomic::AtomicBool,
    /// Raised by `POST /v1/uninstall`: nothing is enrolled or recorded from then on.
    uninstalling: crate::uninstall::Signal,
}

impl PodManager {
    pub fn new(shared: Shared, state_file: Option<PathBuf>) -> Self {
        Self {
            shared: Arc::new(shared),
            pods: Mutex::new(HashMap::new()),
            state_file,
            gate: tokio::sync::RwLock::new(()),
            handing_over: std::sync::atomic::AtomicBool::new(false),
            uninstalling: crate::uninstall::Signal::default(),
        }
    }

    /// Raised once the node is being uninstalled (the CNI installer stops on it).
    pub fn uninstall_signal(&self) -> crate::uninstall::Signal {
        self.uninstalling.clone()
    }

    /// Writes the enrolled pods' specs (public data) atomically.
    fn save(&self) {
        // `ferrule-agent uninstall` removes the file; writing it again would resurrect the pods.
        if self.uninstalling.is_raised() {
            return;
        }
        let Some(file) = &self.state_file else {
            return;
        };
        let specs: Vec<PodSpec> = self
            .lock()
            .values()
            .map(|p| p.enrolled.spec.clone())
            .collect();
        let tmp = file.with_extension("json.tmp");
        let result = serde_json::to_vec_pretty(&specs)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&tmp, json)
            })
            .and_then(|()| std::fs::rename(&tmp, file));
        if let Err(e) = result {
            tracing::warn!(file = %file.display(), error = %e, "cannot record enrolled pods");
        }
    }

    pub fn default_pool() -> TunnelPool {
        TunnelPool::new(PoolConfig::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pod>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `(namespace, pod name, plaintext connections accepted)` per enrolled pod, for metrics.
    pub fn plaintext_counts(&self) -> Vec<(String, String, u64)> {
        let capture = &self.shared.capture;
        self.lock()
            .values()
            .map(|p| {
                let spec = &p.enrolled.spec;
                let name = if spec.name.is_empty() {
                    &spec.uid
                } else {
                    &spec.name
                };
                (
                    spec.namespace.clone(),
                    name.clone(),
                    capture.plaintext_accepted(p.cookie),
                )
            })
            .collect()
    }

    async fn register(&self, spec: &PodSpec) -> Result<String, EnrollError> {
        let workload = v1::Workload {
            uid: spec.uid.clone(),
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
            service_account: spec.service_account.clone(),
            ips: spec.ips.iter().map(|ip| ip.to_string()).collect(),
            labels: spec.labels.clone(),
            ..Default::default()
        };
        let response = WorkloadsClient::new(self.shared.control.clone())
            .register(v1::RegisterWorkloadRequest {
                workload: Some(workload),
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::PermissionDenied => EnrollError::Forbidden(status.message().into()),
                tonic::Code::InvalidArgument => EnrollError::Invalid(status.message().into()),
                _ => EnrollError::Internal(format!(
                    "registering with the control plane: {}",
                    crate::control::status_reason(&status)
                )),
            })?
            .into_inner();
        // Serve this pod only once our own directory knows it (and so do peers on this node).
        let mesh = self.shared.mesh.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            mesh.wait_for_version(response.version),
        )
        .await;
        Ok(response.spiffe_id)
    }

    async fn unregister(&self, uid: &str) {
        unregister(self.shared.control.clone(), uid).await;
    }

    /// Everything after registration; on error the caller unregisters.
    async fn start(&self, spec: &PodSpec, id: &SpiffeId) -> Result<Pod, EnrollError> {
        let internal =
            |what: &str, e: &dyn std::fmt::Display| EnrollError::Internal(format!("{what}: {e}"));
        let netns =
            Arc::new(Netns::open(&spec.netns).map_err(|e| EnrollError::Invalid(e.to_string()))?);
        let cookie = netns.cookie().map_err(|e| internal("netns cookie", &e))?;
        let cert = self
            .shared
            .identities
            .certificate(id, CERT_WAIT)
            .await
            .map_err(|e| internal("workload certificate", &e))?;
        let listen = |kind: &str, addr: SocketAddr| {
            let name = lifecycle::pod_listener(&spec.uid, kind);
            let ours = |l: &std::net::TcpListener| {
                crate::capture::netns_cookie_of(l).ok() == Some(cookie)
                    && l.local_addr().ok() == Some(addr)
            };
            self.shared
                .listeners
                .tcp(&name, ours, || netns.tcp_listener(addr))
        };
        let outbound = listen(
            "outbound",
            SocketAddr::from((Ipv4Addr::LOCALHOST, OUTBOUND_PORT)),
        )
        .map_err(|e| internal("outbound listener", &e))?;
        // IPv6 connects are redirected to [::1]; a pod without IPv6 simply has no such listener.
        let outbound6 = listen(
            "outbound6",
            SocketAddr::from((Ipv6Addr::LOCALHOST, OUTBOUND_PORT)),
        )
        .map_err(|e| tracing::debug!(error = %e, "no IPv6 outbound listener"))
        .ok();
        let inbound = listen(
            "inbound",
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, INBOUND_PORT)),
        )
        .map_err(|e| internal("inbound listener", &e))?;
        let peer_endpoint = listen(
            "peers",
            SocketAddr::from((Ipv4Addr::LOCALHOST, peers::PEER_PORT)),
        )
        .map_err(|e| internal("peer identity endpoint", &e))?;
        let peers = Arc::new(peers::PeerDirectory::default());
        let mode = match spec.mode {
            Mode::Strict => InboundMode::Strict,
            Mode::Permissive => InboundMode::Permissive,
        };
        let capture = PodCapture {
            cgroup: spec.cgroup.clone(),
            netns_cookie: cookie,
            ips: spec.ips.clone(),
            mode,
        };
        self.shared.capture.enroll(&capture).map_err(|e| match e {
            crate::capture::Error::Uninstalling => EnrollError::Uninstalling,
            e => internal("attaching capture", &e),
        })?;
        let slot = Arc::new(CertSlot::new(cert.certified.clone()));
        let server_tls = Arc::new(tls::server_config(
            slot.clone(),
            SpiffeClientVerifier::workloads(self.shared.bundle.clone()),
            &[b"h2"],
        ));
        let mut tasks = vec![
            tokio::spawn(follow_certificate(self.shared.identities.watch(id), slot)),
            tokio::spawn(outbound::serve(
                self.shared.clone(),
                outbound,
                outbound::PodSide {
                    netns: netns.clone(),
                    cookie,
                    id: id.clone(),
                    peers: peers.clone(),
                },
            )),
            tokio::spawn(peers::serve(
                peer_endpoint,
                peers.clone(),
                self.shared.drain.clone(),
                crate::limits::http_limits(
                    &self.shared.limits,
                    self.shared.telemetry.clone(),
                    Listener::PeerEndpoint,
                ),
            )),
            tokio::spawn(inbound::serve(
                inbound,
                server_tls,
                inbound::PodApp {
                    peers: peers.clone(),
                    netns: netns.clone(),
                    ips: spec.ips.clone(),
                    pod: Arc::new(inbound::PodWorkload {
                        id: id.clone(),
                        namespace: spec.namespace.clone(),
                        service_account: spec.service_account.clone(),
                        labels: spec.labels.clone(),
                    }),
                    mesh: self.shared.mesh.clone(),
                    telemetry: self.shared.telemetry.clone(),
                    drain: self.shared.drain.clone(),
                    caps: self.shared.caps.clone(),
                },
                self.shared.limits.clone(),
            )),
        ];
        if let Some(outbound6) = outbound6 {
            let side = outbound::PodSide {
                netns,
                cookie,
                id: id.clone(),
                peers,
            };
            let task = outbound::serve(self.shared.clone(), outbound6, side);
            tasks.push(tokio::spawn(task));
        }
        Ok(Pod {
            enrolled: EnrolledPod {
                spec: spec.clone(),
                spiffe_id: id.to_string(),
                plaintext_accepted: 0,
            },
            id: id.clone(),
            cookie,
            tasks,
        })
    }
}

async fn unregister(control: Channel, uid: &str) {
    let request = v1::UnregisterWorkloadRequest {
        uid: uid.to_owned(),
    };
    if let Err(status) = WorkloadsClient::new(control).unregister(request).await {
        tracing::warn!(%uid, error = %crate::control::status_reason(&status), "unregistering from the control plane failed");
    }
}

/// Outbound tunnels from or to an identity the control plane revoked, with a revoked
/// certificate at either end, or to a destination whose root left the bundle are cut at once
/// (the destination also cuts tunnels whose client certificate it sees revoked).
pub fn spawn_revoked_tunnel_closer(
    pool: TunnelPool,
    mesh: MeshConfig,
    bundle: SharedBundle,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut versions = mesh.subscribe();
        let mut closed = std::collections::HashSet::new();
        let mut checked: Option<Arc<TrustBundle>> = None;
        while versions.changed().await.is_ok() {
            let revoked = versions.borrow_and_update().revocations().clone();
            // Re-verifying every tunnel is worth it only when roots or revocations changed.
            let current = bundle.get();
            let changed = checked.as_ref().is_none_or(|last| {
                last.roots() != current.roots() || last.revocations() != current.revocations()
            });
            if changed {
                pool.close_untrusted(&current);
                checked = Some(current);
            }
            for id in revoked.identities() {
                if closed.insert(id.to_owned())
                    && let Ok(id) = SpiffeId::parse(id)
                {
                    tracing::warn!(%id, "closing outbound tunnels of a revoked identity");
                    pool.close_identity(&id);
                }
            }
            closed.retain(|id: &String| revoked.identity_revoked(id));
        }
    })
}

/// Renewed certificates reach the pod's inbound listener on its next handshake.
async fn follow_certificate(
    mut updates: tokio::sync::watch::Receiver<Option<Arc<crate::identity::WorkloadCert>>>,
    slot: Arc<CertSlot>,
) {
    while updates.changed().await.is_ok() {
        if let Some(cert) = updates.borrow_and_update().clone() {
            slot.set(cert.certified.clone());
        }
    }
}

#[tonic::async_trait]
impl PodLifecycle for PodManager {
    async fn enroll(&self, spec: PodSpec) -> Result<EnrolledPod, EnrollError> {
        let _turn = self.open_gate().await?;
        if self.uninstalling.is_raised() {
            return Err(EnrollError::Uninstalling);
        }
        if let Some(existing) = self.lock().get(&spec.uid) {
            return if existing.enrolled.spec == spec {
                Ok(existing.enrolled.clone())
            } else {
                Err(EnrollError::Conflict(spec.uid.clone()))
            };
        }
        spec.check_target()?;
        let id = SpiffeId::workload(
            &self.shared.trust_domain,
            &spec.namespace,
            &spec.service_account,
        )
        .map_err(|e| EnrollError::Invalid(format!("namespace/service account: {e}")))?;
        self.register(&spec).await?;
        match self.start(&spec, &id).await {
            Err(e) => {
                self.shared
                    .listeners
                    .release(&lifecycle::pod_prefix(&spec.uid));
                self.unregister(&spec.uid).await;
                Err(e)
            }
            // Started while an uninstall released the pods: it must not stay behind.
            Ok(_) if self.uninstalling.is_raised() => {
                self.shared
                    .listeners
                    .release(&lifecycle::pod_prefix(&spec.uid));
                self.unregister(&spec.uid).await;
                Err(EnrollError::Uninstalling)
            }
            Ok(pod) => {
                let enrolled = pod.enrolled.clone();
                tracing::info!(uid = %spec.uid, %id, cookie = pod.cookie, "pod enrolled");
                self.lock().insert(spec.uid.clone(), pod);
                self.save();
                Ok(enrolled)
            }
        }
    }

    async fn unenroll(&self, uid: &str) -> Result<bool, EnrollError> {
        let _turn = self.open_gate().await?;
        let Some(pod) = self.lock().remove(uid) else {
            return Ok(false);
        };
        self.shared.listeners.release(&lifecycle::pod_prefix(uid));
        let result = self
            .shared
            .capture
            .unenroll(&pod.enrolled.spec.cgroup, pod.cookie);
        let id = pod.id.clone();
        drop(pod);
        if !self.lock().values().any(|p| p.id == id) {
            self.shared.identities.release(&id);
        }
        self.save();
        self.unregister(uid).await;
        tracing::info!(%uid, %id, "pod unenrolled");
        result
            .map(|()| true)
            .map_err(|e| EnrollError::Internal(format!("detaching capture: {e}")))
    }

    async fn uninstall(&self) -> UninstallAnswer {
        self.release_all()
    }

    fn config(&self) -> crate::mesh_config::SyncStats {
        self.shared.mesh.stats()
    }

    fn list(&self) -> Vec<EnrolledPod> {
        let capture = &self.shared.capture;
        self.lock()
            .values()
            .map(|p| EnrolledPod {
                plaintext_accepted: capture.plaintext_accepted(p.cookie),
                ..p.enrolled.clone()
            })
            .collect()
    }
}

impl PodManager {
    /// A shared turn to change the pods, unless a successor takes over or the agent stops:
    /// then the new agent must make the change (the caller retries; it reaches the new one).
    async fn open_gate(&self) -> Result<tokio::sync::RwLockReadGuard<'_, ()>, EnrollError> {
        let turn = self.gate.read().await;
        if self.handing_over.load(std::sync::atomic::Ordering::Acquire) {
            return Err(EnrollError::Unavailable(
                "a new agent is taking over on this node".into(),
            ));
        }
        if self.shared.drain.is_draining() {
            return Err(EnrollError::Unavailable("this agent is stopping".into()));
        }
        Ok(turn)
    }
}

#[tonic::async_trait]
impl Handing for PodManager {
    async fn begin_handover(&self) -> Vec<PodSpec> {
        let _all = self.gate.write().await;
        self.handing_over
            .store(true, std::sync::atomic::Ordering::Release);
        self.lock()
            .values()
            .map(|p| p.enrolled.spec.clone())
            .collect()
    }

    fn abort_handover(&self) {
        self.handing_over
            .store(false, std::sync::atomic::Ordering::Release);
    }
}
