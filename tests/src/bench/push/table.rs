//! The benchmark's table: per trigger the time to the first and the last agent's ACK, with the
//! target from the issue, then the control plane's memory per agent. A missed target is
//! reported, not turned into a failure; broken rounds (an agent that never applied a version)
//! are counted and miss the target.

use std::time::Duration;

use super::{Options, Report, Round, Trigger};
use crate::bench::quantile;

/// The target: the last of 1,000 agents has applied a revocation or policy change within this.
const TARGET_P99: Duration = Duration::from_secs(1);

struct Summary {
    rounds: usize,
    /// Rounds in which some agent did not apply the version in time, or the control plane did
    /// not list every ACK.
    incomplete: usize,
    call_p50: Duration,
    first_p50: Duration,
    last_p50: Duration,
    last_p99: Duration,
    last_max: Duration,
    cp_cpu_per_round: Duration,
}

impl Summary {
    fn of(rounds: &[&Round], agents: usize) -> Self {
        let sorted = |f: &dyn Fn(&Round) -> Option<Duration>| {
            let mut v: Vec<Duration> = rounds.iter().filter_map(|r| f(r)).collect();
            v.sort();
            v
        };
        let call = sorted(&|r| Some(r.call));
        let first = sorted(&|r| r.first_ack);
        let last = sorted(&|r| r.last_ack);
        let cpu: Duration = rounds.iter().map(|r| r.cp_cpu).sum();
        Self {
            rounds: rounds.len(),
            incomplete: rounds
                .iter()
                .filter(|r| r.last_ack.is_none() || r.confirmed < agents)
                .count(),
            call_p50: quantile(&call, 0.5),
            first_p50: quantile(&first, 0.5),
            last_p50: quantile(&last, 0.5),
            last_p99: quantile(&last, 0.99),
            last_max: last.last().copied().unwrap_or_default(),
            cp_cpu_per_round: cpu / rounds.len().max(1) as u32,
        }
    }

    fn met(&self) -> bool {
        self.rounds > 0 && self.incomplete == 0 && self.last_p99 < TARGET_P99
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn print(report: &Report, options: &Options) {
    let n = report.agents;
    println!(
        "bench push: {n} simulated agents (each a node with its own certificate, TLS connection \
         and Config.Watch stream), {} rounds per trigger",
        options.rounds
    );
    println!(
        "joined in {:.1} s, watching with the snapshot applied {:.1} s later; open files limit {}",
        report.join_time.as_secs_f64(),
        report.connect_time.as_secs_f64(),
        report.open_files_limit
    );
    println!(
        "times from just before the change to the first / the last agent's ACK of its version"
    );
    println!();
    println!(
        "{:<28} {:>6} {:>10} {:>11} {:>11} {:>11} {:>11} {:>11}  target p99 < 1 s",
        "trigger",
        "rounds",
        "call p50",
        "first p50",
        "last p50",
        "last p99",
        "last max",
        "CP CPU/rnd"
    );
    let summaries: Vec<(Trigger, Summary)> = Trigger::ALL
        .into_iter()
        .map(|trigger| {
            let rounds: Vec<&Round> = report
                .rounds
                .iter()
                .filter(|r| r.trigger == trigger)
                .collect();
            (trigger, Summary::of(&rounds, n))
        })
        .collect();
    for (trigger, s) in &summaries {
        let verdict = match (s.met(), s.incomplete) {
            (true, _) => "met".to_owned(),
            (false, 0) => "NOT MET".to_owned(),
            (false, k) => format!("NOT MET ({k} incomplete)"),
        };
        println!(
            "{:<28} {:>6} {:>10} {:>11} {:>11} {:>11} {:>11} {:>11}  {verdict}",
            trigger.label(),
            s.rounds,
            ms(s.call_p50),
            ms(s.first_p50),
            ms(s.last_p50),
            ms(s.last_p99),
            ms(s.last_max),
            ms(s.cp_cpu_per_round),
        );
    }
    println!();
    print_memory(report);
    if !report.failures.is_empty() || report.resyncs > 0 {
        println!(
            "agent failures: {} (first: {:?}); snapshots after the first: {}",
            report.failures.len(),
            report.failures.first(),
            report.resyncs
        );
    }
    let all_met = summaries.iter().all(|(_, s)| s.met());
    if let Some((trigger, slowest)) = summaries.iter().max_by_key(|(_, s)| s.last_p99) {
        println!(
            "target: p99 from `ferrule revoke` / a policy change to the last of {n} agents' ACK \
             < 1 s: {} (slowest: {} at {})",
            if all_met { "met" } else { "NOT MET" },
            trigger.label(),
            ms(slowest.last_p99)
        );
    }
}

fn print_memory(report: &Report) {
    let m = report.memory;
    let n = report.agents.max(1) as f64;
    let per = |from: u64, to: u64| to.saturating_sub(from) as f64 / n;
    println!("control-plane memory (VmRSS)");
    println!("  {:<40} {:>12}", "before agents", mib(m.before));
    println!(
        "  {:<40} {:>12}",
        format!("{} nodes joined, no stream", report.agents),
        mib(m.joined)
    );
    println!(
        "  {:<40} {:>12}",
        format!("{} watch streams open", report.agents),
        mib(m.connected)
    );
    println!("  {:<40} {:>12}", "after every round", mib(m.end));
    println!(
        "  {:<40} {:>9.1} KiB",
        "per agent (node + stream)",
        per(m.before, m.connected)
    );
    println!(
        "  {:<40} {:>9.1} KiB",
        "per watch stream",
        per(m.joined, m.connected)
    );
}
