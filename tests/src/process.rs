//! Child processes of the real binaries, killed when dropped, with their output kept for asserts.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Path of a workspace binary of the same build profile (target/<profile>/NAME), from a test
/// (target/<profile>/deps/) or from a binary (target/<profile>/).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let mut dir = exe.parent().expect("executable directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target/<profile>");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (cargo xtask test does)",
        path.display()
    );
    path
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "nothing listens on {addr} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub use ferrule_config::process::raise_open_files_limit;

/// User plus system CPU time of process `pid` so far: utime and stime from /proc/<pid>/stat,
/// fields 14 and 15, counted after the `)` that ends the command name, since the name itself
/// may contain spaces.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat (has the process exited?): {e}"));
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

/// The unit of /proc's CPU times (USER_HZ); asked of the system rather than assumed.
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

/// A running binary; stderr and stdout lines are collected.
pub struct Child {
    name: String,
    child: std::process::Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Child {
    pub fn spawn(command: &mut Command) -> Self {
        let name = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        Self {
            name,
            child,
            output,
        }
    }

    /// The process id (for /proc readings such as memory).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU time of the process so far (all its threads), from /proc.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.id())
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// The loopback address (`127.0.0.1:PORT`) in the first line with `needle`, e.g. where a
    /// process that bound port 0 says it listens.
    pub fn logged_address(&self, needle: &str, timeout: Duration) -> std::net::SocketAddr {
        let line = self.wait_for_line(needle, timeout);
        let start = line
            .find("127.0.0.1:")
            .unwrap_or_else(|| panic!("no 127.0.0.1 address in {line:?}"));
        let addr: String = line[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        addr.parse().expect("address")
    }

    /// Waits until a line containing `needle` appears; panics with the output otherwise.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_count(needle, needle, 1, timeout)
    }

    /// Waits until `count` lines contain both `a` and `b`; returns the last such line.
    pub fn wait_for_count(&self, a: &str, b: &str, count: usize, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let matching: Vec<String> = self
                .output
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|l| l.contains(a) && l.contains(b))
                .cloned()
                .collect();
            if matching.len() >= count {
                return matching[count - 1].clone();
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not print {count} lines with {a:?} and {b:?} within {timeout:?}; output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for the process to exit on its own; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            assert!(
                start.elapsed() < timeout,
                "{} still running after {timeout:?}; output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Whether the process has exited, without waiting.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGTERM (a graceful stop), leaving the process to exit on its own.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {}", self.id());
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}
