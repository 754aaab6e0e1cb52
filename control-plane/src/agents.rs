//! What the control plane knows of every agent's configuration stream: connected or not, the
//! version it applied, its last refusal. Kept in memory: it describes live connections.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrule_proto::v1;

#[derive(Debug, Default)]
pub struct AgentSessions {
    agents: Mutex<BTreeMap<String, (u64, v1::AgentStatus)>>,
    next_session: AtomicU64,
}

/// One agent's open stream; marks the agent disconnected when dropped, unless a newer stream of
/// the same node has taken over.
#[derive(Debug)]
pub struct Session {
    sessions: Arc<AgentSessions>,
    node: String,
    id: u64,
}

impl AgentSessions {
    pub fn connect(self: &Arc<Self>, node: &str, version: u64) -> Session {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let mut agents = self.lock();
        let (session, status) = agents.entry(node.to_owned()).or_default();
        *session = id;
        status.node = node.to_owned();
        status.connected = true;
        status.applied_version = version;
        Session {
            sessions: self.clone(),
            node: node.to_owned(),
            id,
        }
    }

    /// Every agent ever connected since the control plane started, by node name.
    pub fn list(&self) -> Vec<v1::AgentStatus> {
        self.lock().values().map(|(_, s)| s.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, v1::AgentStatus)>> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Session {
    fn update(&self, change: impl FnOnce(&mut v1::AgentStatus)) {
        let mut agents = self.sessions.lock();
        if let Some((id, status)) = agents.get_mut(&self.node)
            && *id == self.id
        {
            change(status);
        }
    }

    pub fn sent(&self, snapshot: bool) {
        self.update(|s| match snapshot {
            true => s.snapshots_sent += 1,
            false => s.deltas_sent += 1,
        });
    }

    pub fn acked(&self, version: u64) {
        self.update(|s| {
            s.applied_version = s.applied_version.max(version);
            s.last_ack_ms = crate::state::now_ms();
            if s.nacked_version <= version {
                s.nacked_version = 0;
                s.nack_reason.clear();
            }
        });
    }

    /// The agent's versions and lifecycle state (only the node's newest stream counts: an older
    /// one is a predecessor draining, which the newest agent reports itself).
    pub fn reported(&self, info: v1::AgentInfo) {
        self.update(|s| s.agent = Some(info));
    }

    pub fn nacked(&self, version: u64, reason: &str) {
        self.update(|s| {
            s.nacked_version = version;
            s.nack_reason = reason.to_owned();
        });
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.update(|s| s.connected = false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_stream_of_the_same_node_is_not_marked_disconnected_by_the_old_one() {
        let sessions = Arc::new(AgentSessions::default());
        let old = sessions.connect("n1", 3);
        let new = sessions.connect("n1", 3);
        drop(old);
        new.sent(false);
        new.acked(5);
        let [status] = sessions.list().try_into().unwrap();
        assert!(status.connected);
        assert_eq!((status.applied_version, status.deltas_sent), (5, 1));
        drop(new);
        assert!(!sessions.list()[0].connected);
    }

    #[test]
    fn the_newest_agent_of_a_node_reports_for_it() {
        let sessions = Arc::new(AgentSessions::default());
        let old = sessions.connect("n1", 1);
        let new = sessions.connect("n1", 1);
        let info = |version: &str, draining| v1::AgentInfo {
            version: version.into(),
            program_version: 2,
            draining,
            ..Default::default()
        };
        new.reported(info("0.2.0", false));
        old.reported(info("0.1.0", true));
        let reported = sessions.list()[0].agent.clone().unwrap();
        assert_eq!(
            (reported.version.as_str(), reported.draining),
            ("0.2.0", false)
        );
    }

    #[test]
    fn a_nack_is_shown_until_a_later_version_is_acked() {
        let sessions = Arc::new(AgentSessions::default());
        let session = sessions.connect("n1", 1);
        session.nacked(2, "bad policy");
        assert_eq!(sessions.list()[0].nack_reason, "bad policy");
        session.acked(3);
        assert_eq!(sessions.list()[0].nacked_version, 0);
    }
}
