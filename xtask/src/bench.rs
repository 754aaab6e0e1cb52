//! `cargo xtask bench <name> [ARGS]`: builds the release binaries and runs a benchmark against
//! them. Each benchmark prints its figures beside a baseline measured in the same run.

use crate::cmd::{cargo, run, workspace_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which benchmark: `sign` (certificates/s through the control plane vs raw ECDSA signing).
    pub name: String,
    /// Passed to the benchmark, e.g. `-- --agents 64 --seconds 20`.
    #[arg(last = true)]
    pub rest: Vec<String>,
}

pub fn run_bench(args: Args) -> anyhow::Result<()> {
    if args.name != "sign" {
        anyhow::bail!("unknown benchmark {:?}; available: sign", args.name);
    }
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "ferrule-control-plane",
        "-p",
        "ferrule-tests",
        "--bins",
    ]))?;
    let bench = workspace_root().join("target/release/ferrule-bench");
    run(std::process::Command::new(bench)
        .arg(&args.name)
        .args(&args.rest)
        .current_dir(workspace_root()))
}
