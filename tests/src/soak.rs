//! `cargo xtask soak --minutes N`: a mesh under churn for N minutes, with minute-long workload
//! certificates. Legitimate connections run all the time between pods of both nodes while pods
//! are enrolled and unenrolled, policies applied and deleted, identities revoked and lifted and
//! certificates renewed. Memory and file descriptors of the control plane and every agent are
//! sampled; the soak fails if any legitimate connection failed or either figure keeps growing
//! after the warm-up.

mod churn;
pub mod sampler;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::mesh::Mesh;
use crate::process::binary;
use churn::Counters;
use sampler::{Reading, Series, TABLE_HEADER};

/// Workload certificates live this long, so renewals happen many times in a soak.
const WORKLOAD_TTL: &str = "60s";
const NODES: usize = 2;
/// Per node: 0 serves, 1 connects, 2 is enrolled and unenrolled, 3 is revoked and lifted.
const PODS_PER_NODE: usize = 4;

#[derive(Debug, Clone)]
pub struct Settings {
    pub duration: Duration,
    pub sample_every: Duration,
    /// The share of the run before samples count towards the growth verdict.
    pub warmup_fraction: f64,
}

/// Runs the soak and prints its table; `Err` says why it failed.
pub fn run(settings: &Settings) -> Result<(), String> {
    let mut mesh = Mesh::start(NODES, PODS_PER_NODE);
    restart_control_plane_with_short_certificates(&mut mesh);
    for node in 0..NODES {
        for pod in [0, 1, 3] {
            let (status, body) = mesh.enroll(node, pod, "strict");
            assert!(
                (200..300).contains(&status),
                "enrolling pod {node}-{pod}: {status} {body}"
            );
        }
    }
    let issued_before = churn::issued_certificates(&mesh);
    let _servers = churn::start_servers(&mesh);
    let counters = Counters::default();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let series = std::thread::scope(|scope| {
        churn::spawn_all(scope, &mesh, &counters, &stop);
        let series = sample(&mesh, settings, started);
        stop.store(true, Ordering::Relaxed);
        series
    });
    let renewed = churn::issued_certificates(&mesh).saturating_sub(issued_before);
    report(&series, settings, &counters, renewed, started.elapsed())
}

fn restart_control_plane_with_short_certificates(mesh: &mut Mesh) {
    mesh.stop_control_plane();
    let mut command = mesh
        .cluster
        .node(0)
        .command(binary("ferrule-control-plane"));
    command.env("FERRULE_WORKLOAD_TTL", WORKLOAD_TTL);
    mesh.cp.start_with(command);
}

/// Samples every process until the duration is over.
fn sample(mesh: &Mesh, settings: &Settings, started: Instant) -> Vec<Series> {
    let mut series: Vec<Series> =
        std::iter::once(("control-plane".to_owned(), mesh.cp.process().id()))
            .chain((0..NODES).map(|n| (format!("agent node-{n}"), mesh.agent(n).id())))
            .map(|(name, pid)| Series {
                name,
                pid,
                readings: Vec::new(),
            })
            .collect();
    while started.elapsed() < settings.duration {
        for s in &mut series {
            if let Some(reading) = Reading::of(s.pid) {
                s.readings.push(reading);
            }
        }
        std::thread::sleep(settings.sample_every);
    }
    series
}

fn report(
    series: &[Series],
    settings: &Settings,
    counters: &Counters,
    renewed: usize,
    took: Duration,
) -> Result<(), String> {
    let samples = series.first().map_or(0, |s| s.readings.len());
    let warmup = (samples as f64 * settings.warmup_fraction).ceil() as usize;
    println!(
        "\nsoak: {:.1} min, {samples} samples every {:?} (first {warmup} are warm-up)",
        took.as_secs_f64() / 60.0,
        settings.sample_every
    );
    println!("{TABLE_HEADER}");
    let mut problems = Vec::new();
    for s in series {
        match s.verdict(warmup) {
            Some(v) => {
                println!("{:<18} {v}", s.name);
                if v.rss_grows || v.fds_grow {
                    problems.push(format!("{} keeps growing after the warm-up", s.name));
                }
            }
            None => problems.push(format!(
                "{} ({}): too few samples; did it exit?",
                s.name, s.pid
            )),
        }
    }
    println!("\n{counters}certificates issued during the soak: {renewed}");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", load.trim());
    }
    let failed = counters.failed_connections();
    if failed > 0 {
        problems.push(format!(
            "{failed} legitimate connection(s) failed: {}",
            counters.failure_examples()
        ));
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("; ")),
    }
}
