//! `cargo xtask demo`: builds everything, then runs `ferrule-demo` (tests/src/demo.rs): a
//! control plane and two node agents in a cluster of network-namespace nodes and pods, a request
//! from a plain client in one pod to a plain server in a pod on the other node, and the proof
//! that only TLS 1.3 crossed the link. The cluster is torn down on exit and on Ctrl-C.

use std::process::Command;

use crate::cmd::{cargo, is_root, run, workspace_root};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run_demo(_args: Args) -> anyhow::Result<()> {
    if !is_root()? {
        anyhow::bail!(
            "the demo builds network namespaces, cgroups and eBPF programs: run it as root"
        );
    }
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    let demo = workspace_root().join("target/debug/ferrule-demo");
    run(Command::new(demo).current_dir(workspace_root()))
}
