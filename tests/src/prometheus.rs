//! A real Prometheus server for tests: the `prometheus` binary from Debian's package (installed
//! by `cargo xtask setup`), scraping given targets every second and evaluating given rule files
//! every second, with its storage in a temporary directory; killed when dropped. Queries go
//! through its HTTP API with curl.
//!
//! ```no_run
//! # use ferrule_tests::prometheus::Prometheus;
//! # use std::time::Duration;
//! let prometheus = Prometheus::builder().job("ferrule-agent", ["127.0.0.1:15020"]).start();
//! let connected = prometheus.wait_for("ferrule_config_connected", Duration::from_secs(10));
//! assert_eq!(connected[0]["value"][1], "1");
//! ```

pub mod catalog;
pub mod promql;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::{Child, free_port};

pub use catalog::Catalog;

/// How long the server may take to start answering `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .join("deploy")
}

/// Path of `name` (`prometheus`, `promtool`) on PATH; panics with how to install it.
pub fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not on PATH; it comes with Debian's `prometheus` package, which \
                 `cargo xtask setup` installs"
            )
        })
}

/// What the server scrapes and evaluates.
#[derive(Debug, Default)]
pub struct Builder {
    jobs: Vec<(String, Vec<String>)>,
    scrape_self: bool,
    rule_files: Vec<PathBuf>,
}

impl Builder {
    /// Scrapes `targets` (`host:port`, path `/metrics`) every second as job `name`.
    pub fn job<T: ToString>(mut self, name: &str, targets: impl IntoIterator<Item = T>) -> Self {
        let targets = targets.into_iter().map(|t| t.to_string()).collect();
        self.jobs.push((name.to_string(), targets));
        self
    }

    /// Also scrapes the server's own `/metrics`, as job `prometheus`.
    pub fn scrape_self(mut self) -> Self {
        self.scrape_self = true;
        self
    }

    /// Loads a rule file, evaluated every second (see [`Prometheus::rules`]).
    pub fn rule_file(mut self, path: impl AsRef<Path>) -> Self {
        let path = std::path::absolute(path.as_ref()).expect("absolute rule file path");
        self.rule_files.push(path);
        self
    }

    /// Starts the server on a free 127.0.0.1 port and waits until it is ready.
    pub fn start(self) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let addr = free_port();
        let config = dir.path().join("prometheus.yml");
        // JSON is YAML, and serde_json quotes whatever the paths and targets hold.
        std::fs::write(&config, self.config(addr).to_string()).expect("writing prometheus.yml");
        let mut process = Child::spawn(
            Command::new(tool("prometheus"))
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}")),
        );
        let start = Instant::now();
        while !ready(addr) {
            assert!(
                !process.has_exited(),
                "prometheus exited before it was ready; output:\n{}",
                process.output()
            );
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "prometheus not ready on {addr} after {READY_TIMEOUT:?}; output:\n{}",
                process.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Prometheus {
            process,
            addr,
            _dir: dir,
        }
    }

    fn config(&self, addr: SocketAddr) -> Value {
        let mut jobs = self.jobs.clone();
        if self.scrape_self {
            jobs.push(("prometheus".to_string(), vec![addr.to_string()]));
        }
        let scrape_configs: Vec<Value> = jobs
            .iter()
            .map(|(name, targets)| json!({"job_name": name, "static_configs": [{"targets": targets}]}))
            .collect();
        json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": self.rule_files,
            "scrape_configs": scrape_configs,
        })
    }
}

/// A running Prometheus server; killed when dropped.
pub struct Prometheus {
    // Dropped (killed) before the directory holding its storage is removed.
    process: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Where the server listens (its web UI and API, and its own `/metrics`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's log so far.
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// Runs an instant query; returns `data.result` (for a vector: an array of
    /// `{"metric": {...}, "value": [time, "value"]}`). Panics if the query fails.
    pub fn query(&self, expr: &str) -> Value {
        self.get("/api/v1/query", &[("query", expr)])["result"].take()
    }

    /// Repeats `query` until its result is not empty and returns it; panics after `timeout` with
    /// the scrape targets' state.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let result = self.query(expr);
            if result.as_array().is_some_and(|r| !r.is_empty()) {
                return result;
            }
            assert!(
                start.elapsed() < timeout,
                "`{expr}` returned nothing within {timeout:?}; targets: {:#}",
                self.targets()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The value of a query that must return exactly one sample.
    pub fn value(&self, expr: &str) -> f64 {
        let result = self.query(expr);
        match result.as_array().map(Vec::as_slice) {
            Some([sample]) => sample["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("`{expr}`: sample without a value: {sample}")),
            _ => panic!("`{expr}` should return one sample, returned {result}"),
        }
    }

    /// `data.activeTargets` of `/api/v1/targets`: each target's health and last scrape error.
    pub fn targets(&self) -> Value {
        self.get("/api/v1/targets", &[])["activeTargets"].take()
    }

    /// `data.groups` of `/api/v1/rules`: each rule's health, last error and, for alerts, state.
    pub fn rules(&self) -> Value {
        self.get("/api/v1/rules", &[])["groups"].take()
    }

    /// `data.alerts` of `/api/v1/alerts`: pending and firing alerts.
    pub fn alerts(&self) -> Value {
        self.get("/api/v1/alerts", &[])["alerts"].take()
    }

    /// GETs an API path with URL-encoded parameters; returns `data` of a `success` answer.
    fn get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut curl = Command::new("curl");
        curl.args(["--silent", "--show-error", "--max-time", "10", "--get"]);
        for (name, value) in params {
            curl.arg("--data-urlencode").arg(format!("{name}={value}"));
        }
        let url = format!("http://{}{path}", self.addr);
        let out = curl
            .arg(&url)
            .output()
            .unwrap_or_else(|e| panic!("running curl: {e}"));
        assert!(
            out.status.success(),
            "curl {url} {params:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut body: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{url} {params:?} answered non-JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(body["status"], "success", "{url} {params:?} failed: {body}");
        body["data"].take()
    }
}

/// Whether `/-/ready` answers 200.
fn ready(addr: SocketAddr) -> bool {
    Command::new("curl")
        .args([
            "--silent",
            "--fail",
            "--max-time",
            "2",
            "--output",
            "/dev/null",
        ])
        .arg(format!("http://{addr}/-/ready"))
        .status()
        .is_ok_and(|status| status.success())
}
