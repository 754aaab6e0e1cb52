//! `cargo xtask soak [--minutes N]`: builds the workspace, then runs `ferrule-soak` (root: it
//! builds network namespaces, cgroups and eBPF programs like the tests).

use crate::cmd::{self, is_root, workspace_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long the mesh runs under churn.
    #[arg(long, default_value_t = 2.0)]
    pub minutes: f64,
    /// Passed to `ferrule-soak`, e.g. `-- --sample-seconds 10`.
    #[arg(last = true)]
    pub rest: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !is_root()? {
        anyhow::bail!(
            "the soak builds network namespaces, cgroups and eBPF programs: run it as root"
        );
    }
    crate::setup::run()?;
    cmd::run(cmd::cargo().args(["build", "--workspace", "--bins"]))?;
    let soak = workspace_root().join("target/debug/ferrule-soak");
    cmd::run(
        std::process::Command::new(soak)
            .arg("--minutes")
            .arg(args.minutes.to_string())
            .args(&args.rest)
            .current_dir(workspace_root()),
    )
}
