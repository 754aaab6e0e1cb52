//! Watch events taken in bursts: what arrives together is applied together (one configuration
//! version), and a busy cluster still sees its changes applied at least every second.

use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;

/// A burst ends when no event came for this long...
const QUIET: Duration = Duration::from_millis(100);
/// ... or after this long.
const LONGEST: Duration = Duration::from_secs(1);

/// The next burst of `events`. Waits for its first event, or at most `patience` when given
/// (then the burst is empty). `None` when the stream has ended.
pub async fn next<S: Stream + Unpin>(
    events: &mut S,
    patience: Option<Duration>,
) -> Option<Vec<S::Item>> {
    let first = match patience {
        Some(patience) => match tokio::time::timeout(patience, events.next()).await {
            Ok(first) => first,
            Err(_) => return Some(Vec::new()),
        },
        None => events.next().await,
    };
    let mut burst = vec![first?];
    let end = Instant::now() + LONGEST;
    loop {
        let quiet = (Instant::now() + QUIET).min(end);
        match tokio::time::timeout_at(quiet, events.next()).await {
            Ok(Some(event)) => burst.push(event),
            Ok(None) | Err(_) => return Some(burst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_that_come_together_form_one_burst() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut events = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        for i in 0..3 {
            tx.send(i).unwrap();
        }
        assert_eq!(next(&mut events, None).await, Some(vec![0, 1, 2]));
        assert_eq!(
            next(&mut events, Some(Duration::from_millis(200))).await,
            Some(vec![]),
            "patience ran out"
        );
        tx.send(3).unwrap();
        drop(tx);
        assert_eq!(next(&mut events, None).await, Some(vec![3]));
        assert_eq!(next(&mut events, None).await, None);
    }
}
