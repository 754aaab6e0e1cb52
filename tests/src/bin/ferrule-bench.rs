//! `ferrule-bench sign [--agents N] [--seconds S]`, `ferrule-bench datapath [--seconds S]` and
//! `ferrule-bench push [--agents N] [--rounds R]`; run through `cargo xtask bench <name>`, which
//! builds the release binaries first.
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferrule_tests::ControlPlaneFixture;
use ferrule_tests::bench::{datapath, push, sign};

#[derive(Debug, Parser)]
#[command(about = "Ferrule benchmarks against the real binaries")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Certificates per second through the control plane, beside raw ECDSA signing.
    Sign {
        /// Simulated agents, each with its own node identity and connection.
        #[arg(long, default_value_t = 32)]
        agents: usize,
        /// Requests each agent keeps in flight.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The mesh data path beside plaintext pod to pod, on one 2-node cluster: throughput,
    /// latency, connection rate, agent CPU per GB and agent memory per idle connection.
    Datapath {
        /// Length of each measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Parallel connections for the multi-stream throughput figure.
        #[arg(long, default_value_t = 8)]
        streams: usize,
        /// Connection-making loops for the connection-rate figure.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Idle connections held open for the memory figure.
        #[arg(long, default_value_t = 1000)]
        idle_connections: usize,
    },
    /// Time from `ferrule revoke` or a policy change to the last agent's ACK, with many
    /// simulated agents watching one control plane, and its memory per agent.
    Push {
        /// Simulated agents, each a node with its own certificate, connection and watch stream.
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// Rounds of each trigger (CLI and RPC revocations, policy changes).
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Agents joined, or connected, at once.
        #[arg(long, default_value_t = 50)]
        batch: usize,
        /// Seconds a round may take before it counts as incomplete.
        #[arg(long, default_value_t = 30)]
        round_timeout: u64,
    },
}

#[tokio::main]
async fn main() {
    match Cli::parse().bench {
        Bench::Sign {
            agents,
            in_flight,
            seconds,
        } => {
            let options = sign::Options {
                agents,
                in_flight,
                duration: Duration::from_secs(seconds),
            };
            let mut cp = ControlPlaneFixture::new("example.org");
            cp.add_config(sign::UNLIMITED_SIGN);
            cp.start();
            let report = sign::run(&cp, &options).await;
            report.print(&options);
        }
        Bench::Datapath {
            seconds,
            streams,
            concurrency,
            idle_connections,
        } => {
            let options = datapath::Options {
                duration: Duration::from_secs_f64(seconds),
                streams,
                rr_size: 1024,
                concurrency,
                idle_connections,
            };
            // The mesh harness is synchronous (processes, /proc, sleeps).
            let report = tokio::task::block_in_place(|| datapath::run(&options));
            datapath::print(&report, &options);
        }
        Bench::Push {
            agents,
            rounds,
            batch,
            round_timeout,
        } => {
            let options = push::Options {
                agents,
                rounds,
                batch,
                round_timeout: Duration::from_secs(round_timeout),
            };
            let report = push::run(&options).await;
            push::print(&report, &options);
        }
    }
}
