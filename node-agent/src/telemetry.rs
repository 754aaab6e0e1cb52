//! What the agent tells operators: Prometheus metrics and one JSON access-log line per
//! tunnelled connection, both naming the source and destination identities.

mod access_log;
mod failures;
mod labels;
mod metrics;
mod plaintext;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::registry::Registry;
use serde::Serialize;

pub use access_log::AccessLog;
pub use failures::{FailureKey, FailureLog};
pub use ferrule_identity::tls::HandshakeReason;
pub use labels::{
    AgentRole, CloseReason, Direction, Limit, Listener, RenewalResult, Side, UpdateKind,
    UpdateResult,
};
pub use metrics::Metrics;
pub use plaintext::{PlaintextCollector, PlaintextCounts};

use metrics::{
    AuthzLabels, BytesLabels, ClosedLabels, ConnectionLabels, HandshakeLabels, IdentityLabels,
    LimitLabels, RenewalLabels, UpdateLabels,
};

/// A failed handshake, where it was seen.
#[derive(Debug)]
pub struct HandshakeFailure<'a> {
    pub side: Side,
    pub reason: HandshakeReason,
    pub source: SocketAddr,
    pub source_identity: Option<&'a str>,
    pub destination: SocketAddr,
    pub destination_identity: &'a str,
    pub detail: String,
}

/// One tunnelled connection, as the access log records it when it closes.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRecord {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub direction: Direction,
    pub source_identity: String,
    pub destination_identity: String,
    pub source_address: SocketAddr,
    pub destination_address: SocketAddr,
    /// `allow`, `audit` (allowed, an AUDIT rule matched) or `deny`; outbound: what the peer
    /// answered.
    pub decision: String,
    /// The policy rule (`ns/name#index`), `no_policy`, `default_deny` or the document of the
    /// `defaultAction` that decided (`ns/name#default`), when known here.
    pub rule: String,
    pub bytes_to_destination: u64,
    pub bytes_to_source: u64,
    pub duration_ms: u64,
    pub close_reason: CloseReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

#[derive(Debug)]
pub struct Telemetry {
    pub metrics: Metrics,
    access_log: AccessLog,
    /// Failed handshakes not yet reported to the control plane.
    pub failures: FailureLog,
}

impl Telemetry {
    pub fn new(registry: &mut Registry, access_log: AccessLog) -> Self {
        Self {
            metrics: Metrics::new(registry),
            access_log,
            failures: FailureLog::default(),
        }
    }

    /// Metrics into a throwaway registry and no access log: for tests and tools.
    pub fn disabled() -> Arc<Self> {
        Arc::new(Self::new(&mut Registry::default(), AccessLog::Off))
    }

    pub fn connection_opened(&self, direction: Direction, source: &str, destination: &str) {
        self.metrics
            .connections_opened
            .get_or_create(&ConnectionLabels {
                direction,
                source_identity: source.to_owned(),
                destination_identity: destination.to_owned(),
            })
            .inc();
    }

    pub fn connection_closed(&self, record: &ConnectionRecord) {
        let (direction, source, destination) = (
            record.direction,
            &record.source_identity,
            &record.destination_identity,
        );
        self.metrics
            .connections_closed
            .get_or_create(&ClosedLabels {
                direction,
                source_identity: source.clone(),
                destination_identity: destination.clone(),
                close_reason: record.close_reason,
            })
            .inc();
        for (flow, bytes) in [
            (labels::Flow::ToDestination, record.bytes_to_destination),
            (labels::Flow::ToSource, record.bytes_to_source),
        ] {
            self.metrics
                .bytes
                .get_or_create(&BytesLabels {
                    direction,
                    source_identity: source.clone(),
                    destination_identity: destination.clone(),
                    flow,
                })
                .inc_by(bytes);
        }
        self.access_log.write(record);
    }

    /// Counts a failed handshake and keeps it for the next report to the control plane.
    pub fn handshake_failed(&self, failure: HandshakeFailure<'_>) {
        let (side, reason) = (failure.side, failure.reason);
        tracing::debug!(side = side.as_str(), %reason, source = %failure.source, destination = %failure.destination, "handshake failed");
        self.failures.record(
            FailureKey {
                side: side.as_str(),
                reason: reason.as_str(),
                source_ip: failure.source.ip().to_string(),
                source_identity: failure.source_identity.unwrap_or_default().to_owned(),
                destination_ip: failure.destination.ip().to_string(),
                destination_identity: failure.destination_identity.to_owned(),
            },
            failure.detail,
        );
        self.metrics
            .handshake_failures
            .get_or_create(&HandshakeLabels {
                side,
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn authz_decided(&self, action: &'static str, policy: String) {
        self.metrics
            .authz_decisions
            .get_or_create(&AuthzLabels { action, policy })
            .inc();
    }

    pub fn certificate_in_use(
        &self,
        identity: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) {
        let labels = IdentityLabels {
            identity: identity.to_owned(),
        };
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        };
        self.metrics
            .certificate_expiry
            .get_or_create(&labels)
            .set(unix(not_after));
        self.metrics
            .certificate_not_before
            .get_or_create(&labels)
            .set(unix(not_before));
        // Both renewal series exist from the start, so `increase()` sees their first step.
        for result in [RenewalResult::Ok, RenewalResult::Failed] {
            let _created = self.metrics.renewals.get_or_create(&RenewalLabels {
                identity: identity.to_owned(),
                result,
            });
        }
    }

    /// The identity is no longer used on this node: its expiry must not raise alerts.
    pub fn certificate_released(&self, identity: &str) {
        let labels = IdentityLabels {
            identity: identity.to_owned(),
        };
        self.metrics.certificate_expiry.remove(&labels);
        self.metrics.certificate_not_before.remove(&labels);
    }

    pub fn renewal(&self, identity: &str, result: RenewalResult) {
        self.metrics
            .renewals
            .get_or_create(&RenewalLabels {
                identity: identity.to_owned(),
                result,
            })
            .inc();
    }

    pub fn config_update(&self, result: UpdateResult, kind: UpdateKind, version: u64) {
        self.metrics
            .config_updates
            .get_or_create(&UpdateLabels { result, kind })
            .inc();
        if result == UpdateResult::Ack {
            self.metrics.config_version.set(version as i64);
        }
    }

    pub fn config_connected(&self, connected: bool) {
        self.metrics.config_connected.set(i64::from(connected));
    }

    /// A client was refused or cut by `limit` on `listener` (the caller logs who and why).
    pub fn limit_hit(&self, listener: Listener, limit: Limit) {
        self.metrics
            .limit_hits
            .get_or_create(&LimitLabels { listener, limit })
            .inc();
    }
}
