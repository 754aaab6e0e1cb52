//! The local enrollment API: what a CNI plugin (or the test harness) calls to put a pod under the
//! mesh or take it out. HTTP/1.1 + JSON on a Unix socket that only root can open:
//!
//! - `POST /v1/pods` with a [`PodSpec`] → `201` and the [`EnrolledPod`]
//! - `DELETE /v1/pods/<uid>` → `204`, or `404` if unknown
//! - `GET /v1/pods` → `200` and the list
//! - `GET /v1/config` → `200` and the applied configuration version and its sync state
//! - `POST /v1/uninstall` → `200` and an [`UninstallAnswer`]: `ferrule-agent uninstall` is
//!   taking Ferrule off the node; the agent releases its pods and enrolls none from then on
//!
//! - Kubernetes mode, for the CNI plugin: `POST /v1/cni/add|del|check` with a [`cni::CniRequest`]
//!   (ADD answers a [`cni::CniAnswer`]), `GET /v1/ready` → `200`/`503` and a [`cni::Readiness`]
//!
//! Only processes of the agent's own user may call it (`SO_PEERCRED`; others get 403).
//!
//! Errors are `{"error": "..."}` with 400 (bad spec), 403 (identity not allowed on this node,
//! or a netns or cgroup that is the node's own rather than a pod's),
//! 409 (uid already enrolled with another spec), 503 (uninstalling) or 500.

mod callers;
pub mod cni;
mod server;
mod target;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use server::serve;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Whether an enrolled pod still accepts plaintext from outside the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Only mesh (HBONE) traffic reaches the app; plaintext is dropped by eBPF.
    #[default]
    Strict,
    /// Plaintext is accepted and counted, for migrations.
    Permissive,
}

/// A pod as the CNI plugin describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    pub uid: String,
    #[serde(default)]
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub ips: Vec<IpAddr>,
    /// e.g. /run/netns/<name> or /proc/<pid>/ns/net
    pub netns: PathBuf,
    /// The pod's cgroup v2 directory.
    pub cgroup: PathBuf,
    #[serde(default)]
    pub mode: Mode,
    /// Selected by authorization policies (`spec.selector.matchLabels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// An enrolled pod as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledPod {
    #[serde(flatten)]
    pub spec: PodSpec,
    pub spiffe_id: String,
    /// Plaintext connections accepted from outside the mesh (permissive mode), when listed.
    #[serde(default)]
    pub plaintext_accepted: u64,
}

/// The answer to `POST /v1/uninstall`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UninstallAnswer {
    /// An earlier call had already started it (a second `ferrule-agent uninstall`).
    pub already: bool,
    /// Pods whose proxies were closed by this call.
    pub released_pods: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error("invalid pod spec: {0}")]
    Invalid(String),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("pod {0} is already enrolled with a different spec")]
    Conflict(String),
    #[error("Ferrule is being uninstalled from this node: the agent enrolls no pods any more")]
    Uninstalling,
    #[error("{0}")]
    Internal(String),
    /// The agent is handing over to a new one or stopping: try again (the new agent answers).
    #[error("unavailable, retry: {0}")]
    Unavailable(String),
}

impl EnrollError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::Forbidden(_) => 403,
            Self::Conflict(_) => 409,
            Self::Uninstalling => 503,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
        }
    }
}

/// What the API drives; the agent's pod manager implements it.
#[tonic::async_trait]
pub trait PodLifecycle: Send + Sync + 'static {
    async fn enroll(&self, spec: PodSpec) -> Result<EnrolledPod, EnrollError>;
    /// Returns whether the pod was enrolled.
    async fn unenroll(&self, uid: &str) -> Result<bool, EnrollError>;
    fn list(&self) -> Vec<EnrolledPod>;
    /// `POST /v1/uninstall`: enroll nothing from now on, and release the enrolled pods (their
    /// proxies and registrations; the caller removes their capture).
    async fn uninstall(&self) -> UninstallAnswer;
    /// The applied mesh configuration and its sync state (`GET /v1/config`).
    fn config(&self) -> crate::mesh_config::SyncStats {
        crate::mesh_config::SyncStats::default()
    }
}

impl PodSpec {
    /// Checks what can be checked without touching the system.
    pub fn validate(&self) -> Result<(), EnrollError> {
        let invalid = |m: String| Err(EnrollError::Invalid(m));
        if self.uid.is_empty()
            || self.uid.len() > 128
            || !self
                .uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return invalid(format!("uid {:?}: 1-128 of [A-Za-z0-9-_.]", self.uid));
        }
        if self.ips.is_empty() {
            return invalid("ips: at least one pod IP is required".into());
        }
        if !self.netns.is_absolute() || !self.cgroup.is_absolute() {
            return invalid("netns and cgroup must be absolute paths".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
