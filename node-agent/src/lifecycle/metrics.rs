//! `ferrule_agent_info` and `ferrule_agent_draining`: which agent processes run on the node,
//! with their binary and eBPF program versions, and whether one is draining.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AgentVersion;

pub use crate::telemetry::AgentRole;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InfoLabels {
    version: String,
    program_version: String,
    role: AgentRole,
}

#[derive(Debug, Clone, Default)]
pub struct LifecycleMetrics {
    info: Family<InfoLabels, Gauge>,
    draining: Gauge,
}

impl LifecycleMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "ferrule_agent_info",
            "Agent processes on this node (this one, and a previous one while it drains), 1 each",
            metrics.info.clone(),
        );
        registry.register(
            "ferrule_agent_draining",
            "Agent processes on this node that are draining (this one after a handover or stop, or its predecessor)",
            metrics.draining.clone(),
        );
        metrics
    }

    /// Shows `agent` in `role`, in place of any other role it had.
    pub fn set(&self, agent: &AgentVersion, role: AgentRole) {
        self.remove(agent);
        self.info.get_or_create(&labels(agent, role)).set(1);
        if role == AgentRole::Draining {
            self.draining.inc();
        }
    }

    /// `agent` is gone (a predecessor that exited).
    pub fn remove(&self, agent: &AgentVersion) {
        if self.info.remove(&labels(agent, AgentRole::Draining)) {
            self.draining.dec();
        }
        self.info.remove(&labels(agent, AgentRole::Serving));
    }
}

fn labels(agent: &AgentVersion, role: AgentRole) -> InfoLabels {
    InfoLabels {
        version: agent.version.clone(),
        program_version: agent.program_version.to_string(),
        role,
    }
}
