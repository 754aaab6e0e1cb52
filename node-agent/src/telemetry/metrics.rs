//! The agent's Prometheus metrics (names and labels: deploy/prometheus/METRICS.md).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::{
    CloseReason, Direction, Flow, Limit, Listener, RenewalResult, Side, UpdateKind, UpdateResult,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub direction: Direction,
    pub source_identity: String,
    pub destination_identity: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClosedLabels {
    pub direction: Direction,
    pub source_identity: String,
    pub destination_identity: String,
    pub close_reason: CloseReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BytesLabels {
    pub direction: Direction,
    pub source_identity: String,
    pub destination_identity: String,
    pub flow: Flow,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub side: Side,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AuthzLabels {
    pub action: &'static str,
    pub policy: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IdentityLabels {
    pub identity: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RenewalLabels {
    pub identity: String,
    pub result: RenewalResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpdateLabels {
    pub result: UpdateResult,
    pub kind: UpdateKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimitLabels {
    pub listener: Listener,
    pub limit: Limit,
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_opened: Family<ConnectionLabels, Counter>,
    pub connections_closed: Family<ClosedLabels, Counter>,
    pub bytes: Family<BytesLabels, Counter>,
    pub handshake_failures: Family<HandshakeLabels, Counter>,
    pub authz_decisions: Family<AuthzLabels, Counter>,
    pub certificate_expiry: Family<IdentityLabels, Gauge>,
    pub certificate_not_before: Family<IdentityLabels, Gauge>,
    pub renewals: Family<RenewalLabels, Counter>,
    pub config_version: Gauge,
    pub config_connected: Gauge,
    pub config_updates: Family<UpdateLabels, Counter>,
    pub limit_hits: Family<LimitLabels, Counter>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry;
        r.register(
            "ferrule_connections_opened",
            "Tunnelled connections opened",
            m.connections_opened.clone(),
        );
        r.register(
            "ferrule_connections_closed",
            "Tunnelled connections closed, by close reason",
            m.connections_closed.clone(),
        );
        r.register(
            "ferrule_connection_bytes",
            "Payload bytes carried, by direction of flow",
            m.bytes.clone(),
        );
        r.register(
            "ferrule_handshake_failures",
            "Failed mTLS handshakes, by reason",
            m.handshake_failures.clone(),
        );
        r.register(
            "ferrule_authz_decisions",
            "Authorization decisions on new streams, by action and policy rule",
            m.authz_decisions.clone(),
        );
        r.register(
            "ferrule_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate in use, per identity",
            m.certificate_expiry.clone(),
        );
        r.register(
            "ferrule_certificate_not_before_timestamp_seconds",
            "notBefore of the certificate in use, per identity",
            m.certificate_not_before.clone(),
        );
        r.register(
            "ferrule_certificate_renewals",
            "Certificate requests to the control plane, by result",
            m.renewals.clone(),
        );
        r.register(
            "ferrule_config_version",
            "Configuration version applied",
            m.config_version.clone(),
        );
        r.register(
            "ferrule_config_connected",
            "1 while the Config.Watch stream to the control plane is up",
            m.config_connected.clone(),
        );
        r.register(
            "ferrule_config_updates",
            "Configuration updates received, by answer and kind",
            m.config_updates.clone(),
        );
        r.register(
            "ferrule_limit_hits",
            "Clients refused or cut by a limit of the agent's listeners",
            m.limit_hits.clone(),
        );
        m
    }
}
