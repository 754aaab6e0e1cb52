//! `cargo xtask`: the project's tasks that are not a plain `cargo build` (setup of a fresh
//! machine, the full test run, fuzzing, the demo, benchmarks, container images). It depends on no workspace crate, so it
//! compiles on a machine that cannot build the eBPF programs yet.

mod bench;
mod cmd;
mod demo;
mod fuzz;
mod image;
mod setup;
mod soak;
mod test;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Ferrule project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install everything the project needs (Debian packages, nightly + rust-src, bpf-linker, cargo-fuzz).
    Setup,
    /// Set up, build, then run every test in the workspace, privileged ones included (root),
    /// and a few seconds of each fuzz target.
    Test(test::Args),
    /// Set up, then run the main demo.
    Demo(demo::Args),
    /// Set up, then run a benchmark.
    Bench(bench::Args),
    /// Set up, build, then run the mesh under churn for a while and fail on leaks or failed
    /// connections (root).
    Soak(soak::Args),
    /// Set up, then fuzz every parser target of fuzz/ from its seed corpus (cargo-fuzz, nightly).
    Fuzz(fuzz::Args),
    /// Build OCI image archives of the agent and the control plane (no base image, no registry).
    Image(image::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Test(args) => test::run(args),
        Task::Demo(args) => {
            setup::run()?;
            demo::run_demo(args)
        }
        Task::Bench(args) => {
            setup::run()?;
            bench::run_bench(args)
        }
        Task::Soak(args) => soak::run(args),
        Task::Fuzz(args) => {
            setup::run()?;
            fuzz::run(&args)
        }
        Task::Image(args) => image::run(args),
    }
}
