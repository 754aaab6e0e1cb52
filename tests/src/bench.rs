//! Benchmarks that need the real binaries; each prints its result beside a baseline measured in
//! the same run, because this machine is noisy and only ratios carry over.

pub mod datapath;
pub mod push;
pub mod sign;

use std::time::Duration;

/// The value at quantile `q` (0..=1) of sorted `samples`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}
