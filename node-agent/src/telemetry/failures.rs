//! Failed handshakes, aggregated until the next report to the control plane (which shows them
//! in `ferrule explain`). Bounded: a flood of failures from one source is one entry with a count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ferrule_proto::v1;

/// Distinct (side, reason, source, destination) entries kept between reports.
const MAX_ENTRIES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FailureKey {
    pub side: &'static str,
    pub reason: &'static str,
    pub source_ip: String,
    pub source_identity: String,
    pub destination_ip: String,
    pub destination_identity: String,
}

#[derive(Debug, Default)]
pub struct FailureLog {
    pending: Mutex<HashMap<FailureKey, (u32, i64, String)>>,
}

impl FailureLog {
    pub fn record(&self, key: FailureKey, detail: String) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_ENTRIES && !pending.contains_key(&key) {
            return;
        }
        let entry = pending.entry(key).or_insert((0, now, String::new()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        entry.2 = detail;
    }

    /// Everything recorded since the last call.
    pub fn take(&self) -> Vec<v1::HandshakeFailure> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        pending
            .into_iter()
            .map(
                |(key, (count, last_seen_ms, detail))| v1::HandshakeFailure {
                    side: key.side.to_owned(),
                    reason: key.reason.to_owned(),
                    source_address: key.source_ip,
                    source_identity: key.source_identity,
                    destination_address: key.destination_ip,
                    destination_identity: key.destination_identity,
                    count,
                    last_seen_ms,
                    node: String::new(),
                    detail,
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(source_ip: &str) -> FailureKey {
        FailureKey {
            side: "server",
            reason: "unknown_ca",
            source_ip: source_ip.into(),
            source_identity: String::new(),
            destination_ip: "10.0.0.1".into(),
            destination_identity: "spiffe://example.org/ns/a/sa/b".into(),
        }
    }

    #[test]
    fn repeats_are_counted_and_taking_empties_the_log() {
        let log = FailureLog::default();
        for _ in 0..3 {
            log.record(key("10.0.0.2"), "x".into());
        }
        log.record(key("10.0.0.3"), "y".into());
        let mut taken = log.take();
        taken.sort_by(|a, b| a.source_address.cmp(&b.source_address));
        assert_eq!(taken.iter().map(|f| f.count).collect::<Vec<_>>(), [3, 1]);
        assert!(log.take().is_empty());
    }

    #[test]
    fn a_flood_of_distinct_sources_is_bounded() {
        let log = FailureLog::default();
        for i in 0..1000 {
            log.record(key(&format!("10.1.{}.{}", i / 256, i % 256)), String::new());
        }
        assert_eq!(log.take().len(), MAX_ENTRIES);
    }
}
