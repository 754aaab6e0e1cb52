//! One path under test: `ferrule-loadgen` servers in the server pod, and client runs in the
//! client pod whose report lines are checked and parsed. Whether the path is plaintext or the
//! mesh depends only on whether the pods are enrolled when the servers start.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::{CLIENT, SERVER};
use crate::loadgen::{CONNECT_REQUEST, field};
use crate::mesh::Mesh;
use crate::process::{Child, binary};

const SINK_PORT: u16 = 9100;
const ECHO_PORT: u16 = 9101;
/// An echo server that closes after one connect-rate request (see `loadgen::echo`).
const CONNECT_PORT: u16 = 9102;

/// A client run's time beyond its own duration before it counts as hung: opening a thousand
/// connections one by one through the mesh, or a stalled transfer.
const GRACE: Duration = Duration::from_secs(60);

pub struct Path<'a> {
    mesh: &'a Mesh,
    server_ip: Ipv4Addr,
    /// Killed when the path is dropped.
    _servers: [Child; 3],
}

/// A bulk run's result.
pub struct Bulk {
    pub bytes: u64,
    pub gbit_per_second: f64,
}

impl<'a> Path<'a> {
    pub fn start(mesh: &'a Mesh) -> Self {
        let close_after = CONNECT_REQUEST.len().to_string();
        let servers = [
            server(mesh, &["sink", &SINK_PORT.to_string()]),
            server(mesh, &["echo", &ECHO_PORT.to_string()]),
            server(
                mesh,
                &[
                    "echo",
                    &CONNECT_PORT.to_string(),
                    "--close-after",
                    &close_after,
                ],
            ),
        ];
        Self {
            mesh,
            server_ip: mesh.pod(SERVER.0, SERVER.1).ip,
            _servers: servers,
        }
    }

    pub fn bulk(&self, streams: usize, duration: Duration) -> Bulk {
        let streams = format!("--streams={streams}");
        let line = self.client("source", SINK_PORT, &[&streams], duration);
        Bulk {
            bytes: number(&line, "bytes") as u64,
            gbit_per_second: number(&line, "gbps"),
        }
    }

    /// `(p50, p99)` round trip in µs.
    pub fn rr(&self, size: usize, duration: Duration) -> (f64, f64) {
        let line = self.client("rr", ECHO_PORT, &[&format!("--size={size}")], duration);
        (number(&line, "p50_us"), number(&line, "p99_us"))
    }

    pub fn connect_rate(&self, concurrency: usize, duration: Duration) -> f64 {
        let concurrency = format!("--concurrency={concurrency}");
        let line = self.client("connect-rate", CONNECT_PORT, &[&concurrency], duration);
        number(&line, "per_second")
    }

    /// Holds `connections` idle connections for `duration`, calling `during` once all are open;
    /// panics unless every one still echoes afterwards.
    pub fn hold(&self, connections: usize, duration: Duration, during: impl FnOnce()) {
        let count = format!("--connections={connections}");
        let mut child = Child::spawn(&mut self.command("hold", ECHO_PORT, &[&count], duration));
        child.wait_for_line("hold open=", GRACE);
        during();
        let line = finish(&mut child, "hold connections=", duration);
        assert_eq!(
            (number(&line, "connections"), number(&line, "echoed")),
            (connections as f64, connections as f64),
            "every held connection echoes after the hold: {line}"
        );
    }

    /// Runs `ferrule-loadgen MODE SERVER PORT ARGS --seconds ..` in the client pod and returns
    /// its report line; panics with its output if it fails.
    fn client(&self, mode: &str, port: u16, args: &[&str], duration: Duration) -> String {
        let mut child = Child::spawn(&mut self.command(mode, port, args, duration));
        finish(&mut child, &format!("{mode} "), duration)
    }

    fn command(
        &self,
        mode: &str,
        port: u16,
        args: &[&str],
        duration: Duration,
    ) -> std::process::Command {
        let mut command = self
            .mesh
            .pod(CLIENT.0, CLIENT.1)
            .command(binary("ferrule-loadgen"));
        command
            .args([mode, &self.server_ip.to_string(), &port.to_string()])
            .args(args)
            .arg(format!("--seconds={}", duration.as_secs_f64()));
        command
    }
}

fn server(mesh: &Mesh, args: &[&str]) -> Child {
    let mut command = mesh
        .pod(SERVER.0, SERVER.1)
        .command(binary("ferrule-loadgen"));
    let child = Child::spawn(command.args(args));
    child.wait_for_line("listening on", Duration::from_secs(10));
    child
}

/// Waits for a client run to exit 0 and returns its line starting with `prefix`.
fn finish(child: &mut Child, prefix: &str, duration: Duration) -> String {
    let code = child.wait_exit(duration + GRACE);
    let output = child.output();
    assert_eq!(code, Some(0), "ferrule-loadgen {prefix}failed:\n{output}");
    output
        .lines()
        .find(|line| line.starts_with(prefix) && line.contains('='))
        .unwrap_or_else(|| panic!("no `{prefix}` report line in:\n{output}"))
        .to_owned()
}

fn number(line: &str, key: &str) -> f64 {
    field(line, key).unwrap_or_else(|| panic!("no {key}= in report line {line:?}"))
}
