//! `cargo xtask bench <name>`: benchmarks (placeholder until its owner fills it in).

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which benchmark to run, e.g. `sign` or `datapath`.
    pub name: String,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
