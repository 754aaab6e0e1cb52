//! `bench datapath`: what the mesh costs an app, beside what the same app gets without it. One
//! cluster (client pod on node 1, server pod on node 0) is measured twice with the same load
//! generator (`ferrule-loadgen`, run inside the pods): first with the pods not enrolled, so
//! traffic goes pod to pod over the veth/bridge underlay, then enrolled strict, so it is
//! captured by eBPF and carried agent to agent over HBONE with TLS 1.3.

mod agents;
mod path;
mod table;

use std::time::Duration;

use crate::mesh::Mesh;
use path::Path;

pub use table::print;

/// The pods under test: `(node, pod)`.
const CLIENT: (usize, usize) = (1, 0);
const SERVER: (usize, usize) = (0, 0);

#[derive(Debug, Clone)]
pub struct Options {
    /// Length of each throughput, latency and connection-rate measurement.
    pub duration: Duration,
    /// Parallel connections for the multi-stream throughput figure.
    pub streams: usize,
    /// Request and response size for the latency figure.
    pub rr_size: usize,
    /// Connection-making loops for the connection-rate figure.
    pub concurrency: usize,
    /// Idle connections held open for the agents' memory figure.
    pub idle_connections: usize,
}

/// What both paths are measured on.
#[derive(Debug, Clone, Copy)]
pub struct PathFigures {
    pub single_gbps: f64,
    pub multi_gbps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub connections_per_second: f64,
    /// Bytes moved by both bulk runs, and the agents' CPU time spent meanwhile.
    pub bulk_bytes: u64,
    pub agent_cpu: Duration,
}

impl PathFigures {
    pub fn agent_cpu_seconds_per_gb(&self) -> f64 {
        self.agent_cpu.as_secs_f64() / (self.bulk_bytes as f64 / 1e9)
    }
}

/// The agents' memory, `[client side, server side]` in KiB.
#[derive(Debug, Clone, Copy)]
pub struct AgentMemory {
    /// Enrolled, before any traffic.
    pub idle_kib: [u64; 2],
    /// While `connections` idle connections are held open through the mesh.
    pub holding_kib: [u64; 2],
    pub connections: usize,
}

impl AgentMemory {
    /// Resident memory the held connections added to each agent, scaled to 1,000 connections.
    pub fn per_thousand_kib(&self) -> [f64; 2] {
        [0, 1].map(|side| {
            let added = self.holding_kib[side].saturating_sub(self.idle_kib[side]);
            added as f64 * 1000.0 / self.connections as f64
        })
    }
}

pub struct Report {
    /// The 1-minute load average before the run: other work on the machine skews every figure,
    /// the mesh's more (it adds two processes that must be scheduled per hop).
    pub load_average: f64,
    pub plaintext: PathFigures,
    pub ferrule: PathFigures,
    pub memory: AgentMemory,
}

/// Idle connections are given this long to settle (buffers shrinking) before memory is read.
const SETTLE: Duration = Duration::from_secs(2);

/// Below this the agents cannot have carried (encrypted and decrypted) the bulk traffic.
const MIN_MESH_CPU_SECONDS_PER_GB: f64 = 0.01;

pub fn run(options: &Options) -> Report {
    let load_average = load_average();
    progress("starting a 2-node mesh");
    let mesh = Mesh::start(2, 1);
    let plaintext = measure("plaintext", &Path::start(&mesh), &mesh, options);

    progress("enrolling both pods strict");
    mesh.enroll_all("strict");
    let path = Path::start(&mesh);
    let memory = hold(&path, &mesh, options);
    let ferrule = measure("ferrule", &path, &mesh, options);
    assert!(
        ferrule.agent_cpu_seconds_per_gb() > MIN_MESH_CPU_SECONDS_PER_GB,
        "the agents used {:?} of CPU for {} bytes of enrolled traffic: it bypassed them",
        ferrule.agent_cpu,
        ferrule.bulk_bytes
    );
    Report {
        load_average,
        plaintext,
        ferrule,
        memory,
    }
}

/// Memory first, while the agents have carried nothing but the held connections: later bulk
/// runs would leave allocator caches behind that the connections could hide in.
fn hold(path: &Path, mesh: &Mesh, options: &Options) -> AgentMemory {
    progress(&format!(
        "ferrule: holding {} idle connections",
        options.idle_connections
    ));
    let idle_kib = agents::rss_kib(mesh);
    let mut holding_kib = [0; 2];
    path.hold(options.idle_connections, SETTLE * 2, || {
        std::thread::sleep(SETTLE);
        holding_kib = agents::rss_kib(mesh);
    });
    AgentMemory {
        idle_kib,
        holding_kib,
        connections: options.idle_connections,
    }
}

fn measure(name: &str, path: &Path, mesh: &Mesh, options: &Options) -> PathFigures {
    progress(&format!("{name}: request/response latency"));
    let (p50_us, p99_us) = path.rr(options.rr_size, options.duration);
    progress(&format!("{name}: connection rate"));
    let connections_per_second = path.connect_rate(options.concurrency, options.duration);
    progress(&format!("{name}: bulk throughput"));
    let cpu_before = agents::cpu_time(mesh);
    let single = path.bulk(1, options.duration);
    let multi = path.bulk(options.streams, options.duration);
    PathFigures {
        single_gbps: single.gbit_per_second,
        multi_gbps: multi.gbit_per_second,
        p50_us,
        p99_us,
        connections_per_second,
        bulk_bytes: single.bytes + multi.bytes,
        agent_cpu: agents::cpu_time(mesh) - cpu_before,
    }
}

/// On stderr, so the table on stdout stays clean while a minute of measuring goes by.
fn progress(step: &str) {
    eprintln!("bench datapath: {step}");
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}
