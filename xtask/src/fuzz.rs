//! `cargo xtask fuzz`: runs every fuzz target of `fuzz/` (cargo-fuzz and libFuzzer, on the
//! nightly toolchain) for a while, starting from the seeds checked in under
//! `fuzz/corpus/<target>/`. `cargo xtask test` runs the same for a few seconds per target.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd;

/// Seconds per target of the smoke pass in `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 5;
/// An input slower than this counts as a failure (a hang): the parsers all run in microseconds.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to fuzz each target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Only these targets (default: every one `cargo fuzz list` names).
    pub targets: Vec<String>,
}

/// Builds the fuzz targets once, then fuzzes each of `targets` (all when empty) for `seconds`.
/// Every target runs even after one failed, so one run shows all that crash.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let targets = match args.targets.is_empty() {
        true => list()?,
        false => args.targets.clone(),
    };
    cmd::run(cargo_fuzz().arg("build"))?;
    let failed: Vec<&String> = targets
        .iter()
        .filter(|target| {
            fuzz_target(target, args.seconds)
                .inspect_err(|e| eprintln!("fuzz target {target}: {e:#}"))
                .is_err()
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzz targets {failed:?} failed: the input is in fuzz/artifacts/<target>/; \
             `AYA_BUILD_SKIP=1 cargo +nightly fuzz run <target> <input>` reproduces it"
        );
    }
    println!(
        "fuzz: {} targets, {} s each, no crash",
        targets.len(),
        args.seconds
    );
    Ok(())
}

fn list() -> anyhow::Result<Vec<String>> {
    let names = cmd::stdout(cargo_fuzz().arg("list"))?;
    let names: Vec<String> = names.lines().map(str::to_owned).collect();
    if names.is_empty() {
        bail!("`cargo fuzz list` names no fuzz target");
    }
    Ok(names)
}

/// The checked-in seeds are read only; what libFuzzer finds goes to a corpus under
/// fuzz/target, so a run never rewrites the repository (and a later run starts from it).
fn fuzz_target(target: &str, seconds: u64) -> anyhow::Result<()> {
    let seeds = fuzz_dir().join("corpus").join(target);
    if !seeds.is_dir() {
        bail!("no seed corpus at {}", seeds.display());
    }
    let grown = fuzz_dir().join("target/corpus").join(target);
    std::fs::create_dir_all(&grown).with_context(|| format!("creating {}", grown.display()))?;
    cmd::run(
        cargo_fuzz()
            .args(["run", target])
            .args([&grown, &seeds])
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
            // Executions per second and the like at the end, without a line per new function.
            .args(["-print_final_stats=1", "-print_funcs=0"]),
    )
}

fn fuzz_dir() -> PathBuf {
    cmd::workspace_root().join("fuzz")
}

/// `cargo +nightly fuzz` in the workspace root. `AYA_BUILD_SKIP`: the agent's eBPF object is
/// not needed to fuzz its parsers, and its nested BPF build must not see sanitizer flags.
fn cargo_fuzz() -> Command {
    let mut cmd = cmd::nightly_cargo();
    cmd.arg("fuzz").env("AYA_BUILD_SKIP", "1");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target has seeds: `cargo xtask fuzz` refuses to run one without.
    #[test]
    fn every_fuzz_target_has_a_seed_corpus() {
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
        let targets: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|name| *name != "ferrule-fuzz")
            .collect();
        assert!(
            targets.len() >= 6,
            "fuzz targets in fuzz/Cargo.toml: {targets:?}"
        );
        for target in targets {
            let seeds = fuzz_dir().join("corpus").join(target);
            let count = std::fs::read_dir(&seeds).map_or(0, Iterator::count);
            assert!(count > 0, "no seeds in {}", seeds.display());
        }
    }
}
