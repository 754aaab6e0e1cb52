//! Failed handshakes the agents reported, kept in memory for `ferrule explain`: the answer to
//! "why can these two workloads not talk" is often a certificate problem, not a policy.

use std::collections::HashMap;
use std::sync::Mutex;

use ferrule_proto::v1;

/// Distinct failures kept; the least recently seen go first.
const MAX_ENTRIES: usize = 4096;

type Key = (String, String, String, String, String, String, String);

#[derive(Debug, Default)]
pub struct HandshakeLog {
    entries: Mutex<HashMap<Key, v1::HandshakeFailure>>,
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

impl HandshakeLog {
    /// Adds a report from `node`'s agent.
    pub fn add(&self, node: &str, failures: Vec<v1::HandshakeFailure>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for mut failure in failures {
            failure.node = node.to_owned();
            let key = key(&failure);
            match entries.get_mut(&key) {
                Some(known) => {
                    known.count = known.count.saturating_add(failure.count);
                    known.last_seen_ms = known.last_seen_ms.max(failure.last_seen_ms);
                    known.detail = failure.detail;
                }
                None => {
                    entries.insert(key, failure);
                }
            }
        }
        while entries.len() > MAX_ENTRIES {
            let oldest = entries
                .iter()
                .min_by_key(|(_, f)| f.last_seen_ms)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => drop(entries.remove(&k)),
                None => break,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn reports_are_merged_and_found_by_address_or_identity() {
        let log = HandshakeLog::default();
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
}
