//! What the `ferrule-cni` plugin sends for a pod sandbox, and the agent side that answers it
//! (Kubernetes mode only: the pod's identity and mode come from the API, not from the plugin).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{EnrollError, Mode};

/// `POST /v1/cni/{add,del,check}`: the sandbox as the runtime described it to the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniRequest {
    #[serde(default)]
    pub container_id: String,
    #[serde(default)]
    pub netns: PathBuf,
    #[serde(default)]
    pub ifname: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
}

/// The answer to an ADD: meshed (in a mode), or left alone and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAnswer {
    pub meshed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CniAnswer {
    pub fn meshed(mode: Mode) -> Self {
        Self {
            meshed: true,
            mode: Some(mode),
            reason: None,
        }
    }

    pub fn not_meshed(reason: impl Into<String>) -> Self {
        Self {
            meshed: false,
            mode: None,
            reason: Some(reason.into()),
        }
    }
}

/// `GET /v1/ready`: ready, or what is still missing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// What answers the CNI plugin; the agent's Kubernetes pod source implements it.
#[tonic::async_trait]
pub trait CniEvents: Send + Sync + 'static {
    async fn add(&self, request: CniRequest) -> Result<CniAnswer, EnrollError>;
    /// Idempotent; the pod watch is what finally removes a pod.
    async fn del(&self, request: CniRequest) -> Result<(), EnrollError>;
    /// Whether the pod is enrolled as it should be.
    async fn check(&self, request: CniRequest) -> Result<(), EnrollError>;
    fn readiness(&self) -> Readiness;
    /// Uninstall: stop putting the plugin back into the CNI configuration; returns once
    /// nothing can write it any more.
    async fn stop_installing(&self);
}
