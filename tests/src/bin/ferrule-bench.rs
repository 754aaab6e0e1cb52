//! `ferrule-bench sign [--agents N] [--seconds S]`; run through `cargo xtask bench sign`.
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferrule_tests::ControlPlaneFixture;
use ferrule_tests::bench::sign;

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
            cp.start();
            let report = sign::run(&cp, &options).await;
            report.print(&options);
        }
    }
}
