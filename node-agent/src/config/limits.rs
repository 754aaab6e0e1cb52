//! The `limits:` section: what one client may take from the agent's listeners (the pods'
//! outbound 15001, HBONE 15008 and peer-identity 15021 ports, the readiness port, the
//! enrollment socket). Every
//! field has an environment override `FERRULE_LIMITS_<FIELD>` (`FERRULE_LIMITS_HTTP2_<FIELD>`
//! for the `http2:` ones), and every limit hit counts in `ferrule_limit_hits_total`.

use std::time::Duration;

use ferrule_config::{ConfigError, Env, parse_field};
use serde::Deserialize;

/// Limits of the agent's listeners; see the README ("Limits") for what a client beyond them sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// From TCP accept to finished TLS and HTTP/2 handshakes on the HBONE port.
    pub handshake_timeout: Duration,
    /// A client of the readiness port or the enrollment socket must send a request head
    /// within this long.
    pub header_read_timeout: Duration,
    /// Connections open at once on all pod listeners (15001 and 15008) of the agent.
    pub max_connections: usize,
    /// Outbound connections (15001) one pod has open at once.
    pub max_connections_per_pod: usize,
    /// HBONE connections (15008, all pods) from one source address at once.
    pub max_connections_per_source: usize,
    /// Connections open at once to each of: the readiness port, the enrollment socket, each
    /// pod's peer-identity endpoint (15021).
    pub max_api_connections: usize,
    pub http2: Http2Limits,
}

/// HTTP/2 limits of each HBONE connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams (tunnelled connections) open at once.
    pub max_concurrent_streams: u32,
    /// Bytes of one header block (HPACK-decoded); CONNECT requests carry a few small headers.
    pub max_header_list_size: u32,
    /// Streams the peer reset before the agent accepted them (HTTP/2 rapid reset,
    /// CVE-2023-44487) that may wait in the accept queue.
    pub max_pending_reset_streams: usize,
    /// Streams the agent had to reset because of the peer's protocol errors (MadeYouReset,
    /// CVE-2025-8671), over the connection's life.
    pub max_local_reset_streams: usize,
    /// Streams the peer reset before they were answered, per [`PEER_RESET_WINDOW`].
    pub max_peer_reset_streams: usize,
    /// A quiet connection is pinged this often.
    pub keepalive_interval: Duration,
    /// A peer that has not answered a ping within this long is gone.
    pub keepalive_timeout: Duration,
}

/// The window [`Http2Limits::max_peer_reset_streams`] counts in.
pub const PEER_RESET_WINDOW: Duration = Duration::from_secs(10);

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 50_000,
            max_connections_per_pod: 4_096,
            max_connections_per_source: 512,
            max_api_connections: 64,
            http2: Http2Limits::default(),
        }
    }
}

impl Default for Http2Limits {
    /// Windows and stream counts follow ztunnel, so either end can be a ztunnel; the stream
    /// limit is above any pool's per-connection limit (ztunnel 100, ours 256).
    fn default() -> Self {
        Self {
            max_concurrent_streams: 512,
            max_header_list_size: 16 << 10,
            max_pending_reset_streams: 20,
            max_local_reset_streams: 100,
            max_peer_reset_streams: 200,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Text as in the file (numbers or durations); env values land here too, then one validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    max_connections: Option<u64>,
    max_connections_per_pod: Option<u64>,
    max_connections_per_source: Option<u64>,
    max_api_connections: Option<u64>,
    #[serde(default)]
    http2: RawHttp2,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp2 {
    max_concurrent_streams: Option<u64>,
    max_header_list_size: Option<u64>,
    max_pending_reset_streams: Option<u64>,
    max_local_reset_streams: Option<u64>,
    max_peer_reset_streams: Option<u64>,
    keepalive_interval: Option<String>,
    keepalive_timeout: Option<String>,
}

/// `FERRULE_LIMITS_<FIELD>` for `limits.<field>`, `FERRULE_LIMITS_HTTP2_<FIELD>` for
/// `limits.http2.<field>`.
pub fn env_name(field: &str) -> String {
    format!("FERRULE_LIMITS_{}", field.replace('.', "_").to_uppercase())
}

impl RawLimits {
    pub(super) fn env_overrides(&mut self, env: &dyn Env) -> Result<(), ConfigError> {
        let text = |slot: &mut Option<String>, field: &str| {
            if let Some(v) = env.get(&env_name(field)) {
                *slot = Some(v);
            }
        };
        text(&mut self.handshake_timeout, "handshake_timeout");
        text(&mut self.header_read_timeout, "header_read_timeout");
        text(
            &mut self.http2.keepalive_interval,
            "http2.keepalive_interval",
        );
        text(&mut self.http2.keepalive_timeout, "http2.keepalive_timeout");
        let h = &mut self.http2;
        let counts: [(&mut Option<u64>, &str); 9] = [
            (&mut self.max_connections, "max_connections"),
            (&mut self.max_connections_per_pod, "max_connections_per_pod"),
            (
                &mut self.max_connections_per_source,
                "max_connections_per_source",
            ),
            (&mut self.max_api_connections, "max_api_connections"),
            (
                &mut h.max_concurrent_streams,
                "http2.max_concurrent_streams",
            ),
            (&mut h.max_header_list_size, "http2.max_header_list_size"),
            (
                &mut h.max_pending_reset_streams,
                "http2.max_pending_reset_streams",
            ),
            (
                &mut h.max_local_reset_streams,
                "http2.max_local_reset_streams",
            ),
            (
                &mut h.max_peer_reset_streams,
                "http2.max_peer_reset_streams",
            ),
        ];
        for (slot, field) in counts {
            if let Some(v) = env.get(&env_name(field)) {
                *slot = Some(parse_field(&v, &format!("limits.{field}"))?);
            }
        }
        Ok(())
    }

    pub(super) fn validate(self) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let h = self.http2;
        Ok(Limits {
            handshake_timeout: duration(
                self.handshake_timeout,
                "handshake_timeout",
                d.handshake_timeout,
            )?,
            header_read_timeout: duration(
                self.header_read_timeout,
                "header_read_timeout",
                d.header_read_timeout,
            )?,
            max_connections: count(self.max_connections, "max_connections", d.max_connections)?,
            max_connections_per_pod: count(
                self.max_connections_per_pod,
                "max_connections_per_pod",
                d.max_connections_per_pod,
            )?,
            max_connections_per_source: count(
                self.max_connections_per_source,
                "max_connections_per_source",
                d.max_connections_per_source,
            )?,
            max_api_connections: count(
                self.max_api_connections,
                "max_api_connections",
                d.max_api_connections,
            )?,
            http2: h.validate(d.http2)?,
        })
    }
}

impl RawHttp2 {
    fn validate(self, d: Http2Limits) -> Result<Http2Limits, ConfigError> {
        let u32_count = |value, field, default: u32| {
            count(value, field, default as usize).and_then(|n| {
                u32::try_from(n).map_err(|_| {
                    ConfigError::invalid(&format!("limits.{field}"), "must fit in 32 bits")
                })
            })
        };
        let limits = Http2Limits {
            max_concurrent_streams: u32_count(
                self.max_concurrent_streams,
                "http2.max_concurrent_streams",
                d.max_concurrent_streams,
            )?,
            max_header_list_size: u32_count(
                self.max_header_list_size,
                "http2.max_header_list_size",
                d.max_header_list_size,
            )?,
            max_pending_reset_streams: count(
                self.max_pending_reset_streams,
                "http2.max_pending_reset_streams",
                d.max_pending_reset_streams,
            )?,
            max_local_reset_streams: count(
                self.max_local_reset_streams,
                "http2.max_local_reset_streams",
                d.max_local_reset_streams,
            )?,
            max_peer_reset_streams: count(
                self.max_peer_reset_streams,
                "http2.max_peer_reset_streams",
                d.max_peer_reset_streams,
            )?,
            keepalive_interval: duration(
                self.keepalive_interval,
                "http2.keepalive_interval",
                d.keepalive_interval,
            )?,
            keepalive_timeout: duration(
                self.keepalive_timeout,
                "http2.keepalive_timeout",
                d.keepalive_timeout,
            )?,
        };
        Ok(limits)
    }
}

/// A positive count: a limit of 0 would refuse everything, which is never what was meant.
fn count(value: Option<u64>, field: &str, default: usize) -> Result<usize, ConfigError> {
    let field = format!("limits.{field}");
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::invalid(&field, "must be at least 1")),
        Some(n) => usize::try_from(n).map_err(|_| ConfigError::invalid(&field, "too large")),
    }
}

/// A positive duration.
fn duration(
    value: Option<String>,
    field: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let field = format!("limits.{field}");
    let parsed = ferrule_config::duration(value.as_deref(), &field, default)?;
    if parsed.is_zero() {
        return Err(ConfigError::invalid(&field, "must be longer than 0s"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule_config::MapEnv;

    fn limits(yaml: &str, env: &[(&str, &str)]) -> Result<Limits, ConfigError> {
        let mut raw: RawLimits = if yaml.is_empty() {
            RawLimits::default()
        } else {
            ferrule_config::parse_yaml(yaml, "agent.yaml")?
        };
        raw.env_overrides(&MapEnv::from_pairs(env))?;
        raw.validate()
    }

    #[test]
    fn defaults_file_values_and_env_overrides() {
        assert_eq!(limits("", &[]).unwrap(), Limits::default());
        let set = limits(
            "max_connections_per_pod: 100\nhttp2: {max_local_reset_streams: 5, keepalive_interval: 3s}\n",
            &[
                ("FERRULE_LIMITS_HANDSHAKE_TIMEOUT", "2s"),
                ("FERRULE_LIMITS_HTTP2_MAX_PEER_RESET_STREAMS", "7"),
            ],
        )
        .unwrap();
        assert_eq!(set.max_connections_per_pod, 100);
        assert_eq!(set.http2.max_local_reset_streams, 5);
        assert_eq!(set.http2.keepalive_interval, Duration::from_secs(3));
        assert_eq!(set.handshake_timeout, Duration::from_secs(2));
        assert_eq!(set.http2.max_peer_reset_streams, 7);
    }

    #[test]
    fn bad_values_name_the_field() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 5] = [
            ("max_connections: 0\n", &[], "limits.max_connections"),
            ("handshake_timeout: 0s\n", &[], "limits.handshake_timeout"),
            (
                "http2: {max_header_list_size: 5000000000}\n",
                &[],
                "limits.http2.max_header_list_size",
            ),
            (
                "",
                &[("FERRULE_LIMITS_MAX_CONNECTIONS_PER_SOURCE", "lots")],
                "limits.max_connections_per_source",
            ),
            ("max_conections: 3\n", &[], "max_conections"),
        ];
        for (yaml, env, field) in cases {
            let err = limits(yaml, env).unwrap_err();
            assert!(
                err.to_string().contains(field),
                "expected {field} in: {err}"
            );
        }
    }
}
