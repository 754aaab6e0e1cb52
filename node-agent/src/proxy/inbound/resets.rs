//! Streams a peer resets before sending anything. h2 bounds resets of streams still waiting to
//! be accepted; a peer whose resets arrive after the agent accepted the stream (the usual case:
//! the agent accepts at once) still makes it authorize and connect to the app per stream, for
//! nothing. Past the budget the connection gets GOAWAY `ENHANCE_YOUR_CALM`.

use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::PEER_RESET_WINDOW;

#[derive(Debug)]
pub(super) struct PeerResets {
    max: usize,
    window: Mutex<Window>,
    exceeded: Notify,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    resets: usize,
}

impl PeerResets {
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            window: Mutex::new(Window {
                started: Instant::now(),
                resets: 0,
            }),
            exceeded: Notify::new(),
        }
    }

    /// The peer reset a stream before it was answered.
    pub(super) fn record(&self) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.started.elapsed() >= PEER_RESET_WINDOW {
            *window = Window {
                started: Instant::now(),
                resets: 0,
            };
        }
        window.resets += 1;
        if window.resets == self.max + 1 {
            // Stored until the connection's loop waits for it.
            self.exceeded.notify_one();
        }
    }

    /// Completes once more than `max` resets fell into one window.
    pub(super) async fn exceeded(&self) {
        self.exceeded.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn more_resets_than_the_budget_in_one_window_trip_it() {
        let resets = PeerResets::new(3);
        for _ in 0..3 {
            resets.record();
        }
        let tripped = tokio::time::timeout(std::time::Duration::from_millis(1), resets.exceeded());
        assert!(tripped.await.is_err(), "the budget itself is allowed");
        resets.record();
        resets.exceeded().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_window_starts_from_zero() {
        let resets = PeerResets::new(2);
        for _ in 0..2 {
            resets.record();
        }
        tokio::time::advance(PEER_RESET_WINDOW).await;
        for _ in 0..2 {
            resets.record();
        }
        let tripped = tokio::time::timeout(std::time::Duration::from_millis(1), resets.exceeded());
        assert!(
            tripped.await.is_err(),
            "resets spread over windows are allowed"
        );
    }
}
