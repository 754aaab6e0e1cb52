//! The control plane's Prometheus metrics (names and labels: deploy/prometheus/METRICS.md).
//! Counters are updated where things happen; fleet state (versions, agents, revocations) is read
//! at scrape time, so it can never drift from what the control plane actually holds.

use std::fmt;
use std::sync::{Arc, Weak};

use ferrule_identity::tls::HandshakeReason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::connections::Cut;
use crate::limits::{Listener, NodeCall};
use crate::public::PublicDocuments;
use crate::sources::{JoinMethod, JoinRefusal};
use crate::state::ControlPlane;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CsrLabels {
    pub node: String,
    pub result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct JoinLabels {
    pub method: &'static str,
    pub result: &'static str,
    /// Why a join was refused; empty for joins that succeeded.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub side: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClaimLabels {
    pub node: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimitLabels {
    pub listener: &'static str,
    /// The config field under `limits:`.
    pub limit: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QuotaLabels {
    pub node: String,
    pub call: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReportLabels {
    pub node: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Default)]
pub struct Metrics {
    csr: Family<CsrLabels, Counter>,
    refused_claims: Family<ClaimLabels, Counter>,
    connections_cut: Family<ReasonLabel, Counter>,
    joins: Family<JoinLabels, Counter>,
    handshake_failures: Family<HandshakeLabels, Counter>,
    limit_hits: Family<LimitLabels, Counter>,
    quota_exceeded: Family<QuotaLabels, Counter>,
    reports_trimmed: Family<ReportLabels, Counter>,
    handshake_log_evictions: Counter,
    leader: Gauge,
    leader_changes: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Arc<Self> {
        let m = Self::default();
        registry.register(
            "ferrule_csr",
            "Certificate signing requests, by node and result",
            m.csr.clone(),
        );
        registry.register(
            "ferrule_node_joins",
            "Node.Join calls, by attestation method, result and refusal reason",
            m.joins.clone(),
        );
        registry.register(
            "ferrule_workload_claims_refused",
            "Workloads.Register calls refused, by node and reason",
            m.refused_claims.clone(),
        );
        registry.register(
            "ferrule_control_plane_connections_closed",
            "Connections of callers the control plane closed: revoked, certificate_expired",
            m.connections_cut.clone(),
        );
        registry.register(
            "ferrule_handshake_failures",
            "Failed mTLS handshakes of callers, by reason",
            m.handshake_failures.clone(),
        );
        registry.register(
            "ferrule_control_plane_limit_hits",
            "Connections, streams and handshakes a listener turned away or closed, by listener and limit",
            m.limit_hits.clone(),
        );
        registry.register(
            "ferrule_node_quota_exceeded",
            "Calls of a node refused because it was over its quota, by node and call",
            m.quota_exceeded.clone(),
        );
        registry.register(
            "ferrule_handshake_reports_trimmed",
            "Reported handshake failures dropped or cut, by node and reason",
            m.reports_trimmed.clone(),
        );
        registry.register(
            "ferrule_handshake_log_evictions",
            "Reported handshake failures forgotten to make room for new ones",
            m.handshake_log_evictions.clone(),
        );
        registry.register(
            "ferrule_control_plane_leader",
            "1 while this replica runs the singleton jobs (store maintenance); always 1 on the embedded store",
            m.leader.clone(),
        );
        registry.register(
            "ferrule_control_plane_leader_changes",
            "Times this replica became or stopped being the leader of the singleton jobs",
            m.leader_changes.clone(),
        );
        Arc::new(m)
    }

    pub fn csr(&self, node: &str, issued: bool) {
        // Both series of a node exist from its first request, so `increase()` sees every step.
        for result in ["issued", "refused"] {
            let counter = self.csr.get_or_create(&CsrLabels {
                node: node.to_owned(),
                result,
            });
            if (result == "issued") == issued {
                counter.inc();
            }
        }
    }

    /// Counts one join: `Ok` joined, `Err(reason)` refused.
    pub fn join(&self, method: JoinMethod, outcome: Result<(), JoinRefusal>) {
        let (result, reason) = match outcome {
            Ok(()) => ("joined", ""),
            Err(reason) => ("refused", reason.as_str()),
        };
        self.joins
            .get_or_create(&JoinLabels {
                method: method.as_str(),
                result,
                reason,
            })
            .inc();
    }

    pub fn claim_refused(&self, node: &str, reason: &'static str) {
        self.refused_claims
            .get_or_create(&ClaimLabels {
                node: node.to_owned(),
                reason,
            })
            .inc();
    }

    pub fn connection_cut(&self, cut: Cut) {
        self.connections_cut
            .get_or_create(&ReasonLabel {
                reason: cut.as_str(),
            })
            .inc();
    }

    /// A client hit `limit` (a field under `limits:`) on `listener`.
    pub fn limit_hit(&self, listener: Listener, limit: &'static str) {
        self.limit_hits
            .get_or_create(&LimitLabels {
                listener: listener.as_str(),
                limit,
            })
            .inc();
    }

    pub fn quota_exceeded(&self, node: &str, call: NodeCall) {
        self.quota_exceeded
            .get_or_create(&QuotaLabels {
                node: node.to_owned(),
                call: call.as_str(),
            })
            .inc();
    }

    /// `count` failures of `node`'s report were dropped or cut, for `reason`.
    pub fn report_trimmed(&self, node: &str, reason: &'static str, count: usize) {
        self.reports_trimmed
            .get_or_create(&ReportLabels {
                node: node.to_owned(),
                reason,
            })
            .inc_by(count as u64);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// This replica became (`true`) or stopped being the leader of the singleton jobs.
    pub fn leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        self.leader_changes.inc();
    }

    pub fn handshake_log_evicted(&self, count: usize) {
        self.handshake_log_evictions.inc_by(count as u64);
    }

    pub fn handshake_failed(&self, reason: HandshakeReason) {
        self.handshake_failures
            .get_or_create(&HandshakeLabels {
                side: "server",
                reason: reason.as_str(),
            })
            .inc();
    }
}

/// Fleet state read from the control plane at scrape time.
pub struct FleetCollector(pub Weak<ControlPlane>);

impl fmt::Debug for FleetCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetCollector")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

fn gauge<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(cp) = self.0.upgrade() else {
            return Ok(());
        };
        let version = cp.config.version();
        let version_gauge = ConstGauge::new(version as i64);
        version_gauge.encode(encoder.encode_descriptor(
            "ferrule_config_version",
            "Current configuration version",
            None,
            MetricType::Gauge,
        )?)?;
        let agents = cp.agents.list();
        let node = |a: &ferrule_proto::v1::AgentStatus| NodeLabel {
            node: a.node.clone(),
        };
        gauge(
            &mut encoder,
            "ferrule_agent_connected",
            "1 while the node's agent watches the configuration",
            agents.iter().map(|a| (node(a), i64::from(a.connected))),
        )?;
        gauge(
            &mut encoder,
            "ferrule_agent_applied_version",
            "Configuration version the node's agent last acknowledged",
            agents.iter().map(|a| (node(a), a.applied_version as i64)),
        )?;
        gauge(
            &mut encoder,
            "ferrule_agent_push_lag",
            "Configuration versions the node's agent is behind",
            agents
                .iter()
                .map(|a| (node(a), version.saturating_sub(a.applied_version) as i64)),
        )?;
        let list = crate::revocations::list(&cp);
        let serials = list.len() - list.identities().count();
        gauge(
            &mut encoder,
            "ferrule_revocations",
            "Revocations in force, by kind",
            [
                (KindLabel { kind: "serial" }, serials as i64),
                (
                    KindLabel { kind: "identity" },
                    list.identities().count() as i64,
                ),
            ],
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CrlLabels {
    ca: &'static str,
    issuer: String,
}

/// The CRLs served on `/crl.pem`, read at scrape time: an offline CRL nearing its next update
/// must be re-signed (`ferrule ca crl`) before gateways start refusing clients.
#[derive(Debug)]
pub struct CrlCollector(pub tokio::sync::watch::Receiver<Arc<PublicDocuments>>);

impl Collector for CrlCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let documents = self.0.borrow().clone();
        gauge(
            &mut encoder,
            "ferrule_crl_next_update_timestamp_seconds",
            "When each published CRL expires (Unix seconds), by CA role and issuer",
            documents.crl_status.iter().map(|crl| {
                let labels = CrlLabels {
                    ca: crl.ca,
                    issuer: crl.issuer.clone(),
                };
                (labels, crl.next_update)
            }),
        )
    }
}
