//! The `limits:` section: what one client, one source address or one node may cost the control
//! plane. Every field is optional; the defaults are generous for a fleet of thousands of nodes
//! and stop a single hostile client. Each limit, when hit, is counted (deploy/prometheus/METRICS.md).

use std::time::Duration;

use ferrule_config::{ConfigError, duration};
use serde::Deserialize;

/// A token bucket: `burst` calls at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub per_second: u32,
}

/// Open connections on one listener, in total and from one source (an IPv4 address or an IPv6
/// /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max: usize,
    pub per_source: usize,
}

/// HTTP/2 settings of both listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    pub max_concurrent_streams: u32,
    /// Streams the client resets before the server accepted them (HTTP/2 Rapid Reset,
    /// CVE-2023-44487); more at once and the connection gets GOAWAY(ENHANCE_YOUR_CALM).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server had to reset because of the client's errors over the connection's
    /// lifetime (MadeYouReset, CVE-2025-8671); more and the connection gets GOAWAY.
    pub max_local_error_reset_streams: usize,
    pub max_header_list_size: u32,
    /// Pings an idle connection this often and closes it when no answer comes within
    /// `keepalive_timeout` (dead peers, half-open TCP).
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

/// Bounds on the handshake failures agents report (kept in memory for `ferrule explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLogLimits {
    /// Distinct failures kept; the oldest first-seen entry goes first.
    pub max_entries: usize,
    /// Failures taken from one report; the rest are dropped.
    pub max_failures_per_report: usize,
    /// A failure with a longer address, identity, side or reason is dropped; a longer detail is
    /// cut.
    pub max_field_length: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// TLS handshake, on both listeners: a client that has not finished by then is dropped.
    pub handshake_timeout: Duration,
    /// HTTP/1.1 request headers on the public listener (the gRPC listener is HTTP/2 only).
    pub header_read_timeout: Duration,
    pub connections: ConnectionLimits,
    pub public_connections: ConnectionLimits,
    pub http2: Http2Limits,
    /// Largest gRPC request message accepted.
    pub max_message_size: usize,
    /// `Node.Join` calls from one source, and in total.
    pub join_per_source: Rate,
    pub join_total: Rate,
    /// Joins checked at once (CSR, credential); more wait their turn, so a burst of joins
    /// cannot take every core.
    pub join_max_in_flight: usize,
    /// Per node: `Workloads.Register`, `Identity.Sign`, and handshake-failure reports.
    pub register: Rate,
    pub sign: Rate,
    pub handshake_reports: Rate,
    pub handshake_log: HandshakeLogLimits,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        RawLimits::default()
            .validate()
            .expect("the default limits are valid")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    #[serde(default)]
    connections: RawConnections,
    #[serde(default)]
    public_connections: RawConnections,
    #[serde(default)]
    http2: RawHttp2,
    max_message_size: Option<usize>,
    #[serde(default)]
    join: RawJoin,
    #[serde(default)]
    per_node: RawPerNode,
    #[serde(default)]
    handshake_log: RawHandshakeLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnections {
    max: Option<usize>,
    per_source: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp2 {
    max_concurrent_streams: Option<u32>,
    max_pending_accept_reset_streams: Option<usize>,
    max_local_error_reset_streams: Option<usize>,
    max_header_list_size: Option<u32>,
    keepalive_interval: Option<String>,
    keepalive_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    burst: Option<u32>,
    per_second: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJoin {
    max_in_flight: Option<usize>,
    #[serde(default)]
    per_source: RawRate,
    #[serde(default)]
    total: RawRate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerNode {
    #[serde(default)]
    register: RawRate,
    #[serde(default)]
    sign: RawRate,
    #[serde(default)]
    handshake_reports: RawRate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHandshakeLog {
    max_entries: Option<usize>,
    max_failures_per_report: Option<usize>,
    max_field_length: Option<usize>,
}

/// `value` (or `default`), refused when zero: every limit here must let something through.
fn positive<T: Copy + PartialEq + Default>(
    value: Option<T>,
    field: &str,
    default: T,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if value == T::default() {
        return Err(ConfigError::invalid(field, "must be at least 1"));
    }
    Ok(value)
}

fn positive_duration(
    value: Option<String>,
    field: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let value = duration(value.as_deref(), field, default)?;
    if value.is_zero() {
        return Err(ConfigError::invalid(field, "must be longer than 0s"));
    }
    Ok(value)
}

impl RawRate {
    fn validate(self, field: &str, default: Rate) -> Result<Rate, ConfigError> {
        Ok(Rate {
            burst: positive(self.burst, &format!("{field}.burst"), default.burst)?,
            per_second: positive(
                self.per_second,
                &format!("{field}.per_second"),
                default.per_second,
            )?,
        })
    }
}

impl RawConnections {
    fn validate(
        self,
        field: &str,
        default: ConnectionLimits,
    ) -> Result<ConnectionLimits, ConfigError> {
        let max = positive(self.max, &format!("{field}.max"), default.max)?;
        let per_source = positive(
            self.per_source,
            &format!("{field}.per_source"),
            default.per_source,
        )?;
        if per_source > max {
            return Err(ConfigError::invalid(
                &format!("{field}.per_source"),
                format!("{per_source} is more than {field}.max ({max})"),
            ));
        }
        Ok(ConnectionLimits { max, per_source })
    }
}

impl RawHttp2 {
    fn validate(self) -> Result<Http2Limits, ConfigError> {
        let field = |name: &str| format!("limits.http2.{name}");
        Ok(Http2Limits {
            max_concurrent_streams: positive(
                self.max_concurrent_streams,
                &field("max_concurrent_streams"),
                256,
            )?,
            max_pending_accept_reset_streams: positive(
                self.max_pending_accept_reset_streams,
                &field("max_pending_accept_reset_streams"),
                20,
            )?,
            max_local_error_reset_streams: positive(
                self.max_local_error_reset_streams,
                &field("max_local_error_reset_streams"),
                256,
            )?,
            max_header_list_size: positive(
                self.max_header_list_size,
                &field("max_header_list_size"),
                16 << 10,
            )?,
            keepalive_interval: positive_duration(
                self.keepalive_interval,
                &field("keepalive_interval"),
                Duration::from_secs(30),
            )?,
            keepalive_timeout: positive_duration(
                self.keepalive_timeout,
                &field("keepalive_timeout"),
                Duration::from_secs(20),
            )?,
        })
    }
}

impl RawHandshakeLog {
    fn validate(self) -> Result<HandshakeLogLimits, ConfigError> {
        let field = |name: &str| format!("limits.handshake_log.{name}");
        Ok(HandshakeLogLimits {
            max_entries: positive(self.max_entries, &field("max_entries"), 4096)?,
            max_failures_per_report: positive(
                self.max_failures_per_report,
                &field("max_failures_per_report"),
                512,
            )?,
            max_field_length: positive(self.max_field_length, &field("max_field_length"), 512)?,
        })
    }
}

const fn rate(burst: u32, per_second: u32) -> Rate {
    Rate { burst, per_second }
}

impl RawLimits {
    pub(super) fn validate(self) -> Result<LimitsConfig, ConfigError> {
        let timeout = Duration::from_secs(10);
        Ok(LimitsConfig {
            handshake_timeout: positive_duration(
                self.handshake_timeout,
                "limits.handshake_timeout",
                timeout,
            )?,
            header_read_timeout: positive_duration(
                self.header_read_timeout,
                "limits.header_read_timeout",
                timeout,
            )?,
            // Nodes behind one NAT share a source address, hence a generous per-source share.
            connections: self.connections.validate(
                "limits.connections",
                ConnectionLimits {
                    max: 16384,
                    per_source: 2048,
                },
            )?,
            public_connections: self.public_connections.validate(
                "limits.public_connections",
                ConnectionLimits {
                    max: 1024,
                    per_source: 128,
                },
            )?,
            http2: self.http2.validate()?,
            max_message_size: positive(self.max_message_size, "limits.max_message_size", 4 << 20)?,
            join_per_source: self
                .join
                .per_source
                .validate("limits.join.per_source", rate(256, 20))?,
            join_total: self
                .join
                .total
                .validate("limits.join.total", rate(1024, 100))?,
            join_max_in_flight: positive(self.join.max_in_flight, "limits.join.max_in_flight", 8)?,
            register: self
                .per_node
                .register
                .validate("limits.per_node.register", rate(512, 20))?,
            sign: self
                .per_node
                .sign
                .validate("limits.per_node.sign", rate(512, 20))?,
            // Agents report once a second.
            handshake_reports: self
                .per_node
                .handshake_reports
                .validate("limits.per_node.handshake_reports", rate(16, 4))?,
            handshake_log: self.handshake_log.validate()?,
        })
    }
}
