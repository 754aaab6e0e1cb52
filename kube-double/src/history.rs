//! The bounded change log behind watches, continue tokens and exact-version lists, like etcd's
//! revision history: once events are dropped (history limit or `compact`), resource versions
//! before them have expired and requests naming them get 410.

use std::collections::VecDeque;

use serde_json::Value;

use crate::registry::Gvr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One write. `object` is the state after it (for a delete: the last state, stamped with the
/// deletion's resourceVersion); `previous` the state before (none for an add).
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub gvr: Gvr,
    pub kind: EventType,
    pub object: Value,
    pub previous: Option<Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: u64, oldest: u64 },
}

#[derive(Debug)]
pub struct History {
    events: VecDeque<Event>,
    limit: usize,
    /// The oldest resourceVersion one can still resume from: every event after it is kept.
    oldest: u64,
}

impl History {
    pub fn new(limit: usize) -> Self {
        History {
            events: VecDeque::new(),
            limit: limit.max(1),
            oldest: 0,
        }
    }

    pub fn push(&mut self, event: Event) {
        debug_assert!(
            self.events.back().is_none_or(|last| last.rv < event.rv),
            "events are logged in resourceVersion order"
        );
        if self.events.len() >= self.limit
            && let Some(dropped) = self.events.pop_front()
        {
            self.oldest = dropped.rv;
        }
        self.events.push_back(event);
    }

    pub fn oldest(&self) -> u64 {
        self.oldest
    }

    /// Forgets every event: resource versions below `resume_from` expire.
    pub fn compact(&mut self, resume_from: u64) {
        self.events.clear();
        self.oldest = self.oldest.max(resume_from);
    }

    /// Every kept event after `rv`, oldest first; `Expired` when some of them were dropped.
    pub fn after(&self, rv: u64) -> Result<impl DoubleEndedIterator<Item = &Event>, HistoryError> {
        if rv < self.oldest {
            return Err(HistoryError::Expired {
                requested: rv,
                oldest: self.oldest,
            });
        }
        let start = self.events.partition_point(|e| e.rv <= rv);
        Ok(self.events.range(start..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(rv: u64) -> Event {
        Event {
            rv,
            gvr: Gvr::new("", "v1", "pods"),
            kind: EventType::Added,
            object: Value::Null,
            previous: None,
        }
    }

    fn rvs(history: &History, after: u64) -> Result<Vec<u64>, HistoryError> {
        history
            .after(after)
            .map(|events| events.map(|e| e.rv).collect())
    }

    #[test]
    fn dropping_events_expires_the_versions_before_them() {
        let mut history = History::new(3);
        for rv in 1..=5 {
            history.push(event(rv));
        }
        assert_eq!(rvs(&history, 2), Ok(vec![3, 4, 5]));
        assert_eq!(rvs(&history, 4), Ok(vec![5]));
        assert_eq!(
            rvs(&history, 1),
            Err(HistoryError::Expired {
                requested: 1,
                oldest: 2
            })
        );
        history.compact(6);
        assert!(rvs(&history, 5).is_err());
        assert_eq!(rvs(&history, 6), Ok(vec![]));
    }
}
