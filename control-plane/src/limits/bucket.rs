//! Token buckets, one or one per key (source address, node), with a bounded number of keys.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Rate;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let refilled = self.tokens + elapsed * f64::from(rate.per_second);
        self.tokens = refilled.min(f64::from(rate.burst));
        self.at = now;
    }

    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(rate, now);
        probe.tokens >= f64::from(rate.burst)
    }
}

/// One bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: Rate,
    bucket: Mutex<Bucket>,
}

impl TokenBucket {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            bucket: Mutex::new(Bucket::full(rate, Instant::now())),
        }
    }

    /// Takes a token; `false` when the bucket is empty.
    pub fn take(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket.take(self.rate, Instant::now())
    }
}

/// A bucket per key. Keys whose bucket has refilled are forgotten when room is needed; when every
/// key is busy, a new key is refused (the sweep that found this out runs at most once a second,
/// so a flood of new keys costs O(1) each).
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    rate: Rate,
    max_keys: usize,
    state: Mutex<Keyed<K>>,
}

#[derive(Debug)]
struct Keyed<K> {
    buckets: HashMap<K, Bucket>,
    last_sweep: Option<Instant>,
}

const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys,
            state: Mutex::new(Keyed {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// Takes a token from `key`'s bucket; `false` when it is empty (or no room is left for a new
    /// key).
    pub fn take(&self, key: &K) -> bool {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &K, now: Instant) -> bool {
        let rate = self.rate;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = state.buckets.get_mut(key) {
            return bucket.take(rate, now);
        }
        if state.buckets.len() >= self.max_keys && !state.sweep(rate, now) {
            return false;
        }
        let mut bucket = Bucket::full(rate, now);
        let taken = bucket.take(rate, now);
        state.buckets.insert(key.clone(), bucket);
        taken
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.state.lock().unwrap().buckets.len()
    }
}

impl<K> Keyed<K> {
    /// Forgets full buckets (a new one would be the same); whether room was made.
    fn sweep(&mut self, rate: Rate, now: Instant) -> bool {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < SWEEP_EVERY)
        {
            return false;
        }
        self.last_sweep = Some(now);
        let before = self.buckets.len();
        self.buckets.retain(|_, bucket| !bucket.is_full(rate, now));
        self.buckets.len() < before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate {
            burst: 3,
            per_second: 2,
        };
        let buckets = KeyedBuckets::new(rate, 10);
        let start = Instant::now();
        let taken = (0..5).filter(|_| buckets.take_at(&"n1", start)).count();
        assert_eq!(taken, 3, "the burst, then nothing");
        assert!(buckets.take_at(&"n2", start), "other keys have their own");
        let later = start + Duration::from_millis(500);
        assert!(buckets.take_at(&"n1", later), "one token after 1/rate");
        assert!(!buckets.take_at(&"n1", later));
    }

    #[test]
    fn idle_keys_make_room_and_busy_ones_keep_new_keys_out() {
        let rate = Rate {
            burst: 1,
            per_second: 1,
        };
        let buckets = KeyedBuckets::new(rate, 2);
        let start = Instant::now();
        assert!(buckets.take_at(&1, start) && buckets.take_at(&2, start));
        assert!(!buckets.take_at(&3, start), "both keys are busy: no room");
        let refilled = start + Duration::from_secs(2);
        assert!(buckets.take_at(&3, refilled), "idle keys were forgotten");
        assert_eq!(buckets.keys(), 1);
    }
}
