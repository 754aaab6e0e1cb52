//! The benchmark's one table: per metric plaintext, ferrule, their ratio, and the target from
//! DESIGN.md with whether it was met. A missed target is reported, not turned into a failure:
//! the figure is the point, and the process fails only on broken data or connections.

use super::{Options, Report};

/// The targets (DESIGN.md, "Performance").
const MIN_BULK_RATIO: f64 = 0.5;
const MAX_ADDED_P50_US: f64 = 50.0;
const MAX_KIB_PER_IDLE_CONNECTION: f64 = 16.0;

struct Row {
    metric: String,
    plaintext: Option<f64>,
    ferrule: f64,
    decimals: usize,
    target: Option<Target>,
}

struct Target {
    text: String,
    met: bool,
}

impl Row {
    fn new(metric: impl Into<String>, plaintext: Option<f64>, ferrule: f64) -> Self {
        Self {
            metric: metric.into(),
            plaintext,
            ferrule,
            decimals: 0,
            target: None,
        }
    }

    fn decimals(mut self, decimals: usize) -> Self {
        self.decimals = decimals;
        self
    }

    fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.target = Some(Target {
            text: text.into(),
            met,
        });
        self
    }
}

fn rows(report: &Report, options: &Options) -> Vec<Row> {
    let (p, f) = (&report.plaintext, &report.ferrule);
    let bulk = |metric: String, p: f64, f: f64| {
        Row::new(metric, Some(p), f)
            .decimals(2)
            .target(">= 50% of plaintext", f / p >= MIN_BULK_RATIO)
    };
    let added_p50 = f.p50_us - p.p50_us;
    let mut rows = vec![
        bulk(
            "single-stream throughput (Gbit/s)".into(),
            p.single_gbps,
            f.single_gbps,
        ),
        bulk(
            format!("{}-stream throughput (Gbit/s)", options.streams),
            p.multi_gbps,
            f.multi_gbps,
        ),
        Row::new(rr_metric(options, "p50"), Some(p.p50_us), f.p50_us),
        Row::new(rr_metric(options, "p99"), Some(p.p99_us), f.p99_us),
        Row::new("added p50 latency (µs)", None, added_p50)
            .target("<= 50 µs", added_p50 <= MAX_ADDED_P50_US),
        Row::new(
            format!("new connections/s ({} concurrent)", options.concurrency),
            Some(p.connections_per_second),
            f.connections_per_second,
        ),
        Row::new(
            "agent CPU s per GB (both agents, bulk runs)",
            None,
            f.agent_cpu_seconds_per_gb(),
        )
        .decimals(2),
    ];
    rows.extend(memory_rows(report));
    rows
}

fn rr_metric(options: &Options, quantile: &str) -> String {
    let size = match options.rr_size {
        1024 => "1 KiB".to_owned(),
        bytes => format!("{bytes} B"),
    };
    format!("{size} request/response {quantile} (µs)")
}

/// Per agent, since each node pays for its own side of every connection.
fn memory_rows(report: &Report) -> Vec<Row> {
    let memory = &report.memory;
    let per_thousand = memory.per_thousand_kib();
    let sides = ["client agent", "server agent"];
    let idle = (0..2).map(|side| {
        Row::new(
            format!("RSS idle, {} (KiB)", sides[side]),
            None,
            memory.idle_kib[side] as f64,
        )
    });
    let held = (0..2).map(|side| {
        let kib = per_thousand[side];
        Row::new(
            format!("RSS per 1,000 idle conns, {} (KiB)", sides[side]),
            None,
            kib,
        )
        .target(
            "<= 16 KiB per connection",
            kib / 1000.0 <= MAX_KIB_PER_IDLE_CONNECTION,
        )
    });
    idle.chain(held).collect()
}

pub fn print(report: &Report, options: &Options) {
    println!(
        "bench datapath: client pod on node 1 -> server pod on node 0, {:?} per measurement",
        options.duration
    );
    println!("  plaintext: pods not enrolled, pod to pod over the veth/bridge underlay");
    println!("  ferrule:   pods enrolled strict, eBPF capture -> agent -> HBONE/TLS 1.3 -> agent");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "  load average before the run: {:.2} on {cores} cores (other work skews the figures)",
        report.load_average
    );
    println!(
        "{:<46} {:>10} {:>10} {:>7}  {:<25} result",
        "metric", "plaintext", "ferrule", "ratio", "target"
    );
    let rows = rows(report, options);
    for row in &rows {
        print_row(row);
    }
    let targets: Vec<&Target> = rows.iter().filter_map(|r| r.target.as_ref()).collect();
    let met = targets.iter().filter(|t| t.met).count();
    println!("targets met: {met} of {}", targets.len());
}

fn print_row(row: &Row) {
    let d = row.decimals;
    let plaintext = row.plaintext.map_or("n/a".into(), |p| format!("{p:.d$}"));
    let ratio = match row.plaintext {
        Some(p) if p != 0.0 => format!("{:.2}", row.ferrule / p),
        _ => String::new(),
    };
    let (target, result) = match &row.target {
        Some(t) => (t.text.as_str(), if t.met { "met" } else { "NOT MET" }),
        None => ("", ""),
    };
    let line = format!(
        "{:<46} {:>10} {:>10.d$} {:>7}  {:<25} {result}",
        row.metric, plaintext, row.ferrule, ratio, target
    );
    println!("{}", line.trim_end());
}
