//! The agent's serving phases: taking over (a predecessor still accepts), serving, draining
//! (stop accepting, let established connections finish), closing (the deadline passed: close
//! what is left with close reason `drain`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// How long after the deadline the agent waits for cut connections to write their access-log
/// lines before it exits anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The previous agent accepts on the sockets we inherited until it confirms the handover.
    TakingOver,
    Serving,
    Draining,
    /// The drain deadline passed: whatever is still open is closed now.
    Closing,
}

/// The agent's drain state, shared by every listener and connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    phase: watch::Sender<Phase>,
    timeout: Duration,
    open: AtomicUsize,
    changed: Notify,
}

/// One open connection; dropping it tells the drain the connection finished.
#[derive(Debug)]
pub struct Tracked(Arc<Inner>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Drain {
    /// An agent that serves from the start.
    pub fn new(timeout: Duration) -> Self {
        Self::in_phase(Phase::Serving, timeout)
    }

    /// An agent taking over from a running one: it accepts only after [`Drain::serve`].
    pub fn taking_over(timeout: Duration) -> Self {
        Self::in_phase(Phase::TakingOver, timeout)
    }

    fn in_phase(phase: Phase, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                phase: watch::Sender::new(phase),
                timeout,
                open: AtomicUsize::new(0),
                changed: Notify::new(),
            }),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Starts draining (once): listeners stop accepting now, connections are closed when the
    /// timeout has passed. Returns whether this call started it. Needs a Tokio runtime.
    pub fn start(&self) -> bool {
        let started = self.inner.phase.send_if_modified(|phase| {
            let before = matches!(*phase, Phase::TakingOver | Phase::Serving);
            if before {
                *phase = Phase::Draining;
            }
            before
        });
        if started {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                tokio::time::sleep(inner.timeout).await;
                inner.phase.send_replace(Phase::Closing);
            });
        }
        started
    }

    /// The takeover is complete: start accepting (no-op unless taking over).
    pub fn serve(&self) {
        self.inner.phase.send_if_modified(|phase| {
            let taking_over = *phase == Phase::TakingOver;
            if taking_over {
                *phase = Phase::Serving;
            }
            taking_over
        });
    }

    pub fn is_draining(&self) -> bool {
        matches!(*self.inner.phase.borrow(), Phase::Draining | Phase::Closing)
    }

    /// Completes once the agent may accept (at once, unless it is taking over).
    pub async fn accepting(&self) {
        self.wait_for(|phase| phase != Phase::TakingOver).await;
    }

    /// Completes once draining started: stop accepting.
    pub async fn draining(&self) {
        self.wait_for(|phase| matches!(phase, Phase::Draining | Phase::Closing))
            .await;
    }

    /// Completes once the drain timeout passed: close what is still open.
    pub async fn closing(&self) {
        self.wait_for(|phase| phase == Phase::Closing).await;
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn track(&self) -> Tracked {
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        Tracked(self.inner.clone())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Completes when, after draining started, every connection finished, or shortly after
    /// the deadline (cut connections get [`CLOSE_GRACE`] to log their close).
    pub async fn finished(&self) {
        self.draining().await;
        let idle = async {
            loop {
                let changed = self.inner.changed.notified();
                if self.open() == 0 {
                    return;
                }
                changed.await;
            }
        };
        let deadline = async {
            self.closing().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        };
        tokio::select! {
            () = idle => {}
            () = deadline => {}
        }
    }

    async fn wait_for(&self, done: impl Fn(Phase) -> bool) {
        let mut phase = self.inner.phase.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = phase.wait_for(|p| done(*p)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn finishes_when_the_last_connection_closes() {
        let drain = Drain::new(Duration::from_secs(30));
        let connection = drain.track();
        assert!(drain.start());
        assert!(!drain.start(), "draining starts once");
        let finished = tokio::spawn({
            let drain = drain.clone();
            async move { drain.finished().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!finished.is_finished(), "a connection is still open");
        drop(connection);
        tokio::time::timeout(Duration::from_millis(10), finished)
            .await
            .expect("finished once idle")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn closes_at_the_deadline_and_not_before() {
        let drain = Drain::new(Duration::from_secs(30));
        let _held = drain.track();
        drain.start();
        let started = tokio::time::Instant::now();
        drain.closing().await;
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        drain.finished().await;
        assert_eq!(started.elapsed(), Duration::from_secs(30) + CLOSE_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_successor_accepts_only_once_the_takeover_is_confirmed() {
        let drain = Drain::taking_over(Duration::from_secs(1));
        let waiting = tokio::time::timeout(Duration::from_secs(60), drain.accepting()).await;
        assert!(waiting.is_err(), "not before serve()");
        assert!(!drain.is_draining());
        drain.serve();
        drain.accepting().await;
        assert!(!drain.is_draining());
    }

    #[tokio::test(start_paused = true)]
    async fn serving_agents_are_not_draining() {
        let drain = Drain::new(Duration::from_secs(1));
        assert!(!drain.is_draining());
        let waiting = tokio::time::timeout(Duration::from_secs(60), drain.draining()).await;
        assert!(waiting.is_err(), "draining() waits for start()");
    }
}
