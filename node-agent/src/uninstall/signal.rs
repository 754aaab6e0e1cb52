//! The running agent's side of an uninstall: once `POST /v1/uninstall` arrives, whatever would
//! put Ferrule back on the node (enrollments, the CNI installer's watch) stops for good.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// Raised once, never lowered; clones share it.
#[derive(Debug, Clone)]
pub struct Signal(Arc<watch::Sender<bool>>);

impl Default for Signal {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl Signal {
    /// Raises the signal; returns whether it was raised already.
    pub fn raise(&self) -> bool {
        self.0.send_replace(true)
    }

    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the signal is raised (never, if it never is).
    pub fn raised(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.0.subscribe();
        async move {
            if receiver.wait_for(|raised| *raised).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Signal;

    #[tokio::test]
    async fn raised_completes_for_every_clone_and_raise_says_whether_it_was_already() {
        let signal = Signal::default();
        let waiting = tokio::spawn(signal.clone().raised());
        assert!(!signal.is_raised());
        assert!(!signal.raise(), "first raise");
        assert!(signal.raise(), "second raise");
        waiting.await.expect("the waiter completes");
        signal.raised().await; // raised before it was asked: completes at once
    }
}
