//! Failed handshakes the agents reported, kept in memory for `ferrule explain`: the answer to
//! "why can these two workloads not talk" is often a certificate problem, not a policy.
//!
//! Bounded in every direction an agent controls: failures per report, the length of each field,
//! and distinct entries (the oldest first-seen goes first, in O(1)).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use ferrule_proto::v1;

use crate::config::HandshakeLogLimits;

type Key = (String, String, String, String, String, String, String);

#[derive(Debug)]
pub struct HandshakeLog {
    limits: HandshakeLogLimits,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<Key, v1::HandshakeFailure>,
    /// Keys in the order they were first seen: the front is evicted first.
    order: VecDeque<Key>,
}

/// What [`HandshakeLog::add`] did not keep, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// Failures past `max_failures_per_report`.
    pub over_count: usize,
    /// Failures with a key field longer than `max_field_length`.
    pub field_too_long: usize,
    /// Details cut to `max_field_length`.
    pub detail_cut: usize,
    /// Older entries forgotten to make room.
    pub evicted: usize,
}

fn key(f: &v1::HandshakeFailure) -> Key {
    (
        f.node.clone(),
        f.side.clone(),
        f.reason.clone(),
        f.source_address.clone(),
        f.source_identity.clone(),
        f.destination_address.clone(),
        f.destination_identity.clone(),
    )
}

/// Cuts `text` to at most `max` bytes on a character boundary; whether it was cut.
fn cut(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

impl HandshakeLog {
    pub fn new(limits: HandshakeLogLimits) -> Self {
        Self {
            limits,
            entries: Mutex::default(),
        }
    }

    /// Adds a report from `node`'s agent.
    pub fn add(&self, node: &str, mut failures: Vec<v1::HandshakeFailure>) -> Trimmed {
        let limits = self.limits;
        let mut trimmed = Trimmed {
            over_count: failures
                .len()
                .saturating_sub(limits.max_failures_per_report),
            ..Trimmed::default()
        };
        failures.truncate(limits.max_failures_per_report);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for mut failure in failures {
            failure.node = node.to_owned();
            let key = key(&failure);
            if [&key.1, &key.2, &key.3, &key.4, &key.5, &key.6]
                .iter()
                .any(|field| field.len() > limits.max_field_length)
            {
                trimmed.field_too_long += 1;
                continue;
            }
            trimmed.detail_cut += usize::from(cut(&mut failure.detail, limits.max_field_length));
            trimmed.evicted += entries.merge(key, failure, limits.max_entries);
        }
        trimmed
    }

    /// Failures from `source` (identity or one of its IPs) to `destination` (identity or IP),
    /// most recent first.
    pub fn between(
        &self,
        source: (&str, &[String]),
        destination: (&str, &[String]),
    ) -> Vec<v1::HandshakeFailure> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut found: Vec<_> = entries
            .by_key
            .values()
            .filter(|f| {
                let from = f.source_identity == source.0 || source.1.contains(&f.source_address);
                let to = f.destination_identity == destination.0
                    || destination.1.contains(&f.destination_address);
                from && to
            })
            .cloned()
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.last_seen_ms));
        found
    }
}

impl Entries {
    /// Adds or merges one failure; returns how many entries were evicted for it.
    fn merge(&mut self, key: Key, failure: v1::HandshakeFailure, max_entries: usize) -> usize {
        if let Some(known) = self.by_key.get_mut(&key) {
            known.count = known.count.saturating_add(failure.count);
            known.last_seen_ms = known.last_seen_ms.max(failure.last_seen_ms);
            known.detail = failure.detail;
            return 0;
        }
        let mut evicted = 0;
        while self.by_key.len() >= max_entries {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.by_key.remove(&oldest);
            evicted += 1;
        }
        self.order.push_back(key.clone());
        self.by_key.insert(key, failure);
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HandshakeLogLimits = HandshakeLogLimits {
        max_entries: 4096,
        max_failures_per_report: 512,
        max_field_length: 512,
    };

    fn failure(source: &str, reason: &str, at: i64) -> v1::HandshakeFailure {
        v1::HandshakeFailure {
            side: "server".into(),
            reason: reason.into(),
            source_address: source.into(),
            destination_address: "10.0.0.9".into(),
            destination_identity: "spiffe://td/ns/a/sa/db".into(),
            count: 1,
            last_seen_ms: at,
            ..Default::default()
        }
    }

    fn all(log: &HandshakeLog) -> Vec<v1::HandshakeFailure> {
        let everyone: Vec<String> = (0..100).map(|i| format!("10.0.0.{i}")).collect();
        log.between(("", &everyone), ("", &["10.0.0.9".into()]))
    }

    #[test]
    fn reports_are_merged_and_found_by_address_or_identity() {
        let log = HandshakeLog::new(LIMITS);
        log.add("n1", vec![failure("10.0.0.2", "expired", 1)]);
        log.add(
            "n1",
            vec![
                failure("10.0.0.2", "expired", 5),
                failure("10.0.0.3", "unknown_ca", 3),
            ],
        );
        let db = ("spiffe://td/ns/a/sa/db", &["10.0.0.9".to_string()][..]);
        let found = log.between(("spiffe://td/ns/a/sa/web", &["10.0.0.2".into()]), db);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (
                found[0].count,
                found[0].last_seen_ms,
                found[0].node.as_str()
            ),
            (2, 5, "n1")
        );
        assert!(log.between(("x", &[]), db).is_empty());
    }

    /// Issue 12 finding 5: an agent could fill the control plane's memory with reports of any
    /// size and number; eviction was a scan of every entry per report.
    #[test]
    fn reports_are_bounded_in_count_field_length_and_entries() {
        let log = HandshakeLog::new(HandshakeLogLimits {
            max_entries: 3,
            max_failures_per_report: 4,
            max_field_length: 24,
        });
        let mut long_detail = failure("10.0.0.1", "expired", 1);
        long_detail.detail = "é".repeat(20);
        let report = vec![
            long_detail,
            failure("10.0.0.2", &"x".repeat(25), 1),
            failure("10.0.0.3", "expired", 2),
            failure("10.0.0.4", "expired", 3),
            failure("10.0.0.5", "expired", 4),
        ];
        let trimmed = log.add("n1", report);
        assert_eq!(
            trimmed,
            Trimmed {
                over_count: 1,
                field_too_long: 1,
                detail_cut: 1,
                evicted: 0
            }
        );
        let kept = all(&log);
        assert_eq!(kept.len(), 3, "{kept:?}");
        let cut = kept
            .iter()
            .find(|f| f.source_address == "10.0.0.1")
            .unwrap();
        assert_eq!(cut.detail, "é".repeat(12), "cut on a character boundary");

        let trimmed = log.add("n1", vec![failure("10.0.0.6", "expired", 0)]);
        assert_eq!(trimmed.evicted, 1);
        let sources: Vec<_> = all(&log).into_iter().map(|f| f.source_address).collect();
        assert!(
            !sources.contains(&"10.0.0.1".to_string()) && sources.contains(&"10.0.0.6".into()),
            "the first seen went first: {sources:?}"
        );
    }
}
