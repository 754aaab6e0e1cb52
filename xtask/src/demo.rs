//! `cargo xtask demo`: the main demo (placeholder until its owner fills it in).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
