//! `ferrule_agent_info`, `ferrule_agent_draining` and `ferrule_ebpf_links`: which agent
//! processes run on the node, with their binary and eBPF program versions, whether one is
//! draining, and which program version the pod links run. The same state goes to the control
//! plane (`ferrule status`) as the [`v1::AgentInfo`] this keeps current.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use ferrule_proto::v1;
use tokio::sync::watch;

use super::AgentVersion;
use crate::capture::Capture;

pub use crate::telemetry::AgentRole;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InfoLabels {
    version: String,
    program_version: String,
    role: AgentRole,
}

#[derive(Debug, Clone)]
pub struct LifecycleMetrics {
    info: Family<InfoLabels, Gauge>,
    draining: Gauge,
    /// Set once capture is loaded: `ferrule_ebpf_links` reads the pod links from it.
    pub capture: Arc<OnceLock<Arc<Capture>>>,
    report: Arc<watch::Sender<v1::AgentInfo>>,
}

/// `ferrule_ebpf_links{program_version}`, read from the pinned links at each scrape.
#[derive(Debug)]
struct LinksCollector(Arc<OnceLock<Arc<Capture>>>);

impl Collector for LinksCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(capture) = self.0.get() else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "ferrule_ebpf_links",
            "Pod cgroup links of the eBPF capture on this node, by the program version they run",
            None,
            MetricType::Gauge,
        )?;
        for (program_version, links) in capture.links_by_version() {
            let labels = [("program_version", program_version)];
            ConstGauge::new(links as i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl LifecycleMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            info: Family::default(),
            draining: Gauge::default(),
            capture: Arc::default(),
            report: Arc::new(watch::Sender::new(v1::AgentInfo::default())),
        };
        registry.register(
            "ferrule_agent_info",
            "Agent processes on this node (this one, and a previous one while it drains), 1 each",
            metrics.info.clone(),
        );
        registry.register_collector(Box::new(LinksCollector(metrics.capture.clone())));
        registry.register(
            "ferrule_agent_draining",
            "Agent processes on this node that are draining (this one after a handover or stop, or its predecessor)",
            metrics.draining.clone(),
        );
        metrics
    }

    /// Shows `agent` (this process, or a predecessor) in `role`, in place of any other role.
    pub fn set(&self, agent: &AgentVersion, role: AgentRole) {
        self.remove(agent);
        self.info.get_or_create(&labels(agent, role)).set(1);
        if role == AgentRole::Draining {
            self.draining.inc();
        }
        let draining = role == AgentRole::Draining;
        self.report.send_modify(|info| match is_us(agent) {
            true => {
                info.version.clone_from(&agent.version);
                info.program_version = agent.program_version;
                info.draining = draining;
            }
            false if draining => {
                info.predecessor_version.clone_from(&agent.version);
                info.predecessor_program_version = agent.program_version;
            }
            false => {}
        });
    }

    /// `agent` is gone (a predecessor that exited).
    pub fn remove(&self, agent: &AgentVersion) {
        if self.info.remove(&labels(agent, AgentRole::Draining)) {
            self.draining.dec();
        }
        self.info.remove(&labels(agent, AgentRole::Serving));
        if !is_us(agent) {
            self.report.send_if_modified(|info| {
                let had = !info.predecessor_version.is_empty();
                info.predecessor_version.clear();
                info.predecessor_program_version = 0;
                had
            });
        }
    }

    /// What to tell the control plane, kept current.
    pub fn report(&self) -> watch::Receiver<v1::AgentInfo> {
        self.report.subscribe()
    }
}

fn is_us(agent: &AgentVersion) -> bool {
    agent.pid == std::process::id()
}

fn labels(agent: &AgentVersion, role: AgentRole) -> InfoLabels {
    InfoLabels {
        version: agent.version.clone(),
        program_version: agent.program_version.to_string(),
        role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(pid: u32, program_version: u32) -> AgentVersion {
        AgentVersion {
            version: "0.1.0".into(),
            program_version,
            pid,
        }
    }

    #[test]
    fn the_report_follows_this_agent_and_its_draining_predecessor() {
        let metrics = LifecycleMetrics::register(&mut Registry::default());
        let report = metrics.report();
        let us = agent(std::process::id(), 2);
        let before = agent(std::process::id() + 1, 1);
        metrics.set(&us, AgentRole::Serving);
        metrics.set(&before, AgentRole::Draining);
        let info = report.borrow().clone();
        assert_eq!((info.program_version, info.draining), (2, false));
        assert_eq!(info.predecessor_program_version, 1);
        assert_eq!(metrics.draining.get(), 1);
        metrics.remove(&before);
        metrics.set(&us, AgentRole::Draining);
        let info = report.borrow().clone();
        assert!(info.draining && info.predecessor_version.is_empty());
        assert_eq!(metrics.draining.get(), 1, "only this agent drains now");
    }
}
