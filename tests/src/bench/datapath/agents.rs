//! The agents' processes as /proc sees them: CPU time and resident memory, client side first.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{CLIENT, SERVER};
use crate::mesh::Mesh;

/// User plus system CPU time of both agents so far (all their threads).
pub fn cpu_time(mesh: &Mesh) -> Duration {
    [CLIENT.0, SERVER.0]
        .map(|node| process_cpu_time(mesh.agent(node).id()))
        .into_iter()
        .sum()
}

/// Resident memory of `[client-side agent, server-side agent]`.
pub fn rss_kib(mesh: &Mesh) -> [u64; 2] {
    [CLIENT.0, SERVER.0].map(|node| mesh.agent(node).rss_kib())
}

/// utime + stime from /proc/<pid>/stat: fields 14 and 15, counted after the `)` that ends the
/// command name, since the name itself may contain spaces.
fn process_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat (has the agent exited?): {e}"));
    let after_name = &stat[stat.rfind(')').expect("comm in /proc/<pid>/stat") + 1..];
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| {
            field
                .parse::<u64>()
                .expect("utime/stime in /proc/<pid>/stat")
        })
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
}

/// The unit of /proc's CPU times (USER_HZ); asked of libc rather than assumed.
fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("running getconf CLK_TCK");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("getconf CLK_TCK prints a number")
    })
}
