//! `ferrule-loadgen MODE ..`: an app's traffic from inside a pod, for `bench datapath`
//! (modes in `ferrule_tests::loadgen`). Servers print `MODE listening on ADDR` once bound;
//! clients print one `key=value` report line and exit 0, or exit 1 naming what went wrong.
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferrule_tests::loadgen::{self, Error};

#[derive(Debug, Parser)]
#[command(about = "Load generator for the Ferrule data-path benchmark")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Accept bulk streams, verify every byte, print each stream's count.
    Sink { port: u16 },
    /// Send bulk data to a sink; prints bytes and Gbit/s.
    Source {
        host: IpAddr,
        port: u16,
        #[arg(long, default_value_t = 1)]
        streams: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Echo server; with --close-after it closes once it has echoed that many bytes.
    Echo {
        port: u16,
        #[arg(long)]
        close_after: Option<u64>,
    },
    /// Request/response ping-pong on one connection; prints p50/p99 in µs.
    Rr {
        host: IpAddr,
        port: u16,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// New connection + one 32-byte exchange each, against `echo --close-after 32`.
    ConnectRate {
        host: IpAddr,
        port: u16,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Open N connections to an echo server, print `hold open=N`, keep them idle, check them.
    Hold {
        host: IpAddr,
        port: u16,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    let mode = Cli::parse().mode;
    match runtime(&mode).block_on(run(mode)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrule-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Bulk modes get a worker per core; the others one thread, so a measured round trip has no
/// cross-thread wake-ups in it.
fn runtime(mode: &Mode) -> tokio::runtime::Runtime {
    let mut builder = match mode {
        Mode::Sink { .. } | Mode::Source { .. } => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().expect("tokio runtime")
}

async fn run(mode: Mode) -> Result<(), Error> {
    let secs = Duration::from_secs_f64;
    match mode {
        Mode::Sink { port } => {
            let listener = bound("sink", port)?;
            loadgen::sink(listener, |verified| match verified {
                Ok(bytes) => println!("sink bytes={bytes}"),
                Err(e) => eprintln!("sink error: {e}"),
            })
            .await
        }
        Mode::Echo { port, close_after } => loadgen::echo(bound("echo", port)?, close_after).await,
        Mode::Source {
            host,
            port,
            streams,
            seconds,
        } => {
            let report = loadgen::source((host, port).into(), streams, secs(seconds)).await?;
            println!("{report}");
            Ok(())
        }
        Mode::Rr {
            host,
            port,
            size,
            seconds,
        } => {
            println!(
                "{}",
                loadgen::rr((host, port).into(), size, secs(seconds)).await?
            );
            Ok(())
        }
        Mode::ConnectRate {
            host,
            port,
            concurrency,
            seconds,
        } => {
            let addr = SocketAddr::from((host, port));
            println!(
                "{}",
                loadgen::connect_rate(addr, concurrency, secs(seconds)).await?
            );
            Ok(())
        }
        Mode::Hold {
            host,
            port,
            connections,
            seconds,
        } => {
            let opened = |open| println!("hold open={open}");
            let report = loadgen::hold((host, port).into(), connections, secs(seconds), opened);
            println!("{}", report.await?);
            Ok(())
        }
    }
}

/// Binds `port` and says so on stdout, which is what the benchmark waits for.
fn bound(mode: &str, port: u16) -> Result<tokio::net::TcpListener, Error> {
    let listener = loadgen::listen(port)?;
    println!("{mode} listening on port {port}");
    Ok(listener)
}
