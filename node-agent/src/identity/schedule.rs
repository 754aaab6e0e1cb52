//! When to renew and how long to wait after a failure.

use std::time::{Duration, SystemTime};

/// Renewal timing. Defaults: renew between 40% and 50% of the lifetime (jitter spreads a fleet's
/// renewals), retry from 500 ms doubling up to 30 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    /// Fraction of the lifetime after which to renew.
    pub renew_fraction: f64,
    /// Up to this fraction of the lifetime is taken off at random.
    pub jitter_fraction: f64,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            renew_fraction: 0.5,
            jitter_fraction: 0.1,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl RenewalPolicy {
    /// When to renew a certificate received at `received_at` that expires at `not_after`;
    /// `random` is uniform in [0, 1).
    pub fn renew_at(
        &self,
        received_at: SystemTime,
        not_after: SystemTime,
        random: f64,
    ) -> SystemTime {
        let lifetime = not_after.duration_since(received_at).unwrap_or_default();
        let fraction = (self.renew_fraction - self.jitter_fraction * random).max(0.0);
        received_at + lifetime.mul_f64(fraction)
    }

    /// Delay before retry number `attempt` (1-based), never past `until` (the expiry).
    pub fn backoff(&self, attempt: u32, now: SystemTime, until: Option<SystemTime>) -> Duration {
        let exp = self
            .backoff_initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.backoff_max);
        match until.and_then(|t| t.duration_since(now).ok()) {
            // Close to expiry, retry at least four times in what is left.
            Some(left) => exp.min((left / 4).max(self.backoff_initial)),
            None => exp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_between_40_and_50_percent() {
        let p = RenewalPolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let end = t0 + Duration::from_secs(1000);
        assert_eq!(p.renew_at(t0, end, 0.0), t0 + Duration::from_secs(500));
        let earliest = p.renew_at(t0, end, 0.999_999);
        assert!(
            earliest >= t0 + Duration::from_secs(400) && earliest < t0 + Duration::from_secs(401)
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RenewalPolicy::default();
        let now = SystemTime::UNIX_EPOCH;
        let delays: Vec<_> = (1..=9)
            .map(|n| p.backoff(n, now, None).as_millis())
            .collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        // Ten seconds before expiry, never wait more than a quarter of that.
        let soon = now + Duration::from_secs(10);
        assert_eq!(p.backoff(9, now, Some(soon)), Duration::from_millis(2500));
    }
}
