//! `cargo xtask bench <name> [ARGS]`: builds the release binaries and runs a benchmark against
//! them. Each benchmark prints its figures beside a baseline measured in the same run.

use crate::cmd::{cargo, is_root, run, workspace_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which benchmark: `sign` (certificates/s through the control plane vs raw ECDSA signing),
    /// `datapath` (the mesh data path vs plaintext pod to pod; root, like the tests) or `push`
    /// (time from `ferrule revoke` / a policy change to the last of 1,000 agents' ACK).
    pub name: String,
    /// Passed to the benchmark, e.g. `-- --agents 64 --seconds 20`.
    #[arg(last = true)]
    pub rest: Vec<String>,
}

pub fn run_bench(args: Args) -> anyhow::Result<()> {
    // The packages to build, with every binary or (to spare time and disk) only those named.
    let (packages, bins): (&[&str], &[&str]) = match args.name.as_str() {
        "sign" => (&["ferrule-control-plane", "ferrule-tests"], &[]),
        // The mesh: the agent (with its eBPF programs), the CLI that makes join tokens, and
        // ferrule-loadgen from the tests crate.
        "datapath" => (
            &[
                "ferrule-control-plane",
                "ferrule-node-agent",
                "ferrule-cli",
                "ferrule-tests",
            ],
            &[],
        ),
        // The simulated agents live in ferrule-bench; the CLI makes the changes.
        "push" => (
            &["ferrule-control-plane", "ferrule-cli", "ferrule-tests"],
            &["ferrule-control-plane", "ferrule", "ferrule-bench"],
        ),
        other => anyhow::bail!("unknown benchmark {other:?}; available: sign, datapath, push"),
    };
    if args.name == "datapath" && !is_root()? {
        anyhow::bail!(
            "bench datapath builds network namespaces, cgroups and eBPF programs: run it as root"
        );
    }
    let mut build = cargo();
    build.args(["build", "--release"]);
    for package in packages {
        build.args(["-p", package]);
    }
    match bins {
        [] => {
            build.arg("--bins");
        }
        bins => {
            for bin in bins {
                build.args(["--bin", bin]);
            }
        }
    }
    run(&mut build)?;
    let bench = workspace_root().join("target/release/ferrule-bench");
    run(std::process::Command::new(bench)
        .arg(&args.name)
        .args(&args.rest)
        .current_dir(workspace_root()))
}
