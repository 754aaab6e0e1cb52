//! `ferrule-soak --minutes N`: the mesh under churn for N minutes (see `ferrule_tests::soak`);
//! run it through `cargo xtask soak`, which builds everything first. Exits 1 if a legitimate
//! connection failed or a process's memory or file descriptors kept growing.
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ferrule_tests::soak::{self, Settings};

#[derive(Debug, Parser)]
#[command(about = "Ferrule soak: churn, minute-long certificates, leak detection")]
struct Cli {
    /// How long to run.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Seconds between two readings of every process.
    #[arg(long, default_value_t = 5)]
    sample_seconds: u64,
    /// Share of the run (from its start) left out of the growth verdict.
    #[arg(long, default_value_t = 0.25)]
    warmup: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !(cli.minutes > 0.0 && (0.0..0.9).contains(&cli.warmup) && cli.sample_seconds > 0) {
        eprintln!(
            "ferrule-soak: --minutes must be positive, --warmup in [0, 0.9), --sample-seconds positive"
        );
        return ExitCode::from(2);
    }
    let settings = Settings {
        duration: Duration::from_secs_f64(cli.minutes * 60.0),
        sample_every: Duration::from_secs(cli.sample_seconds),
        warmup_fraction: cli.warmup,
    };
    match soak::run(&settings) {
        Ok(()) => {
            println!("soak passed");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("soak failed: {why}");
            ExitCode::FAILURE
        }
    }
}
