//! Resident memory and open file descriptors of the mesh's processes over a soak, and whether
//! either keeps growing once the warm-up is over.

use std::fmt;

/// One reading of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub rss_kib: u64,
    pub fds: u64,
}

impl Reading {
    /// The process's reading now, or `None` if it is gone.
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(Self { rss_kib, fds })
    }
}

/// The readings of one process, oldest first.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub pid: u32,
    pub readings: Vec<Reading>,
}

/// How far the late readings may exceed the early ones before that counts as growth: noise,
/// allocator slack and connections that happen to be open at a sample.
const RSS_SLACK_KIB: u64 = 4 * 1024;
const RSS_SLACK_FRACTION: f64 = 0.10;
const FD_SLACK: u64 = 16;

/// A series' figures after the warm-up: the first third's highest reading against the last
/// third's median. Growth is a last-third median above the first third's maximum by more than
/// the slack: a leak keeps climbing, a working set levels off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub rss_early_max: u64,
    pub rss_late_median: u64,
    pub rss_max: u64,
    pub fds_early_max: u64,
    pub fds_late_median: u64,
    pub fds_max: u64,
    pub rss_grows: bool,
    pub fds_grow: bool,
}

impl Series {
    /// The verdict on the readings after the first `warmup` of them; `None` with too few.
    pub fn verdict(&self, warmup: usize) -> Option<Verdict> {
        let steady = self.readings.get(warmup..)?;
        if steady.len() < 3 {
            return None;
        }
        let third = steady.len() / 3;
        let (early, late) = (&steady[..third], &steady[steady.len() - third..]);
        let rss = |r: &Reading| r.rss_kib;
        let fds = |r: &Reading| r.fds;
        let (rss_early_max, rss_late_median) = (max(early, rss), median(late, rss));
        let (fds_early_max, fds_late_median) = (max(early, fds), median(late, fds));
        let rss_slack = RSS_SLACK_KIB.max((rss_early_max as f64 * RSS_SLACK_FRACTION) as u64);
        Some(Verdict {
            rss_early_max,
            rss_late_median,
            rss_max: max(steady, rss),
            fds_early_max,
            fds_late_median,
            fds_max: max(steady, fds),
            rss_grows: rss_late_median > rss_early_max + rss_slack,
            fds_grow: fds_late_median > fds_early_max + FD_SLACK,
        })
    }
}

fn max(readings: &[Reading], field: impl Fn(&Reading) -> u64) -> u64 {
    readings.iter().map(field).max().unwrap_or(0)
}

fn median(readings: &[Reading], field: impl Fn(&Reading) -> u64) -> u64 {
    let mut values: Vec<u64> = readings.iter().map(field).collect();
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |grows: bool| if grows { "GROWS" } else { "flat" };
        write!(
            f,
            "{:>9} {:>9} {:>9} {:<5}  {:>6} {:>6} {:>6} {:<5}",
            self.rss_early_max / 1024,
            self.rss_late_median / 1024,
            self.rss_max / 1024,
            flag(self.rss_grows),
            self.fds_early_max,
            self.fds_late_median,
            self.fds_max,
            flag(self.fds_grow),
        )
    }
}

pub const TABLE_HEADER: &str =
    "process            RSS MiB:  early      late       max trend  fds: early   late    max trend";

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rss_mib: &[u64], fds: &[u64]) -> Series {
        let readings = rss_mib
            .iter()
            .zip(fds)
            .map(|(&r, &f)| Reading {
                rss_kib: r * 1024,
                fds: f,
            })
            .collect();
        Series {
            name: "agent".into(),
            pid: 1,
            readings,
        }
    }

    #[test]
    fn a_working_set_that_levels_off_is_flat() {
        let s = series(
            &[5, 20, 30, 31, 30, 32, 31, 30, 32, 31],
            &[9, 40, 50, 55, 48, 60, 52, 50, 49, 51],
        );
        let v = s.verdict(2).unwrap();
        assert!(!v.rss_grows && !v.fds_grow, "{v:?}");
    }

    #[test]
    fn a_steady_climb_after_the_warm_up_is_growth() {
        let s = series(
            &[30, 30, 40, 50, 60, 70, 80, 90, 100, 110],
            &[50, 50, 80, 110, 140, 170, 200, 230, 260, 290],
        );
        let v = s.verdict(2).unwrap();
        assert!(v.rss_grows && v.fds_grow, "{v:?}");
    }

    #[test]
    fn too_few_readings_give_no_verdict() {
        assert!(series(&[1, 2, 3], &[1, 2, 3]).verdict(1).is_none());
    }

    #[test]
    fn this_process_can_be_read() {
        let me = Reading::of(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.fds > 0);
        assert!(Reading::of(u32::MAX).is_none());
    }
}
