//! `cargo xtask test`: set up, build, then run every test in the workspace and a smoke pass of
//! every fuzz target. Several tests load eBPF programs, create cgroups and network namespaces,
//! so this runs as root.

mod summary;

use anyhow::bail;

use crate::{cmd, fuzz, setup};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Passed on to `cargo test`, e.g. `-p ferrule-node-agent ebpf::`.
    #[arg(allow_hyphen_values = true)]
    pub cargo_args: Vec<String>,
    /// After `--`: passed on to the test binaries, e.g. `-- --nocapture`.
    #[arg(last = true)]
    pub harness_args: Vec<String>,
}

impl Args {
    /// Arguments for `cargo test`: the whole workspace unless packages were picked (cargo would
    /// ignore `-p` next to `--workspace`), then the harness ones after `--` as cargo expects.
    fn cargo_test_args(&self) -> Vec<&str> {
        let picks_packages = self
            .cargo_args
            .iter()
            .any(|a| a.starts_with("-p") || a.starts_with("--package"));
        // Run every test binary even after a failure, so one run shows all that is broken.
        let mut args = vec!["test", "--no-fail-fast"];
        if !picks_packages {
            args.push("--workspace");
        }
        args.extend(self.cargo_args.iter().map(String::as_str));
        if !self.harness_args.is_empty() {
            args.push("--");
            args.extend(self.harness_args.iter().map(String::as_str));
        }
        args
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !cmd::is_root()? {
        bail!(
            "`cargo xtask test` runs privileged tests (eBPF, cgroups, network namespaces): \
             run it as root, e.g. `sudo -E cargo xtask test`"
        );
    }
    setup::run()?;
    cmd::run(cmd::cargo().args(["build", "--workspace"]))?;
    // The workstation build of the CLI (no node checks) must build without the agent.
    cmd::run(cmd::cargo().args(["check", "-p", "ferrule-cli", "--no-default-features"]))?;
    let mut totals = summary::Totals::default();
    let result = cmd::run_streaming(cmd::cargo().args(args.cargo_test_args()), |line| {
        totals.add_line(line);
    });
    // A few seconds of each fuzz target: they build, and the seeds and the first mutations
    // do not crash. Skipped when packages or tests were picked.
    let fuzzed = match args.cargo_args.is_empty() {
        true => fuzz::run(&fuzz::Args {
            seconds: fuzz::SMOKE_SECONDS,
            targets: Vec::new(),
        }),
        false => Ok(()),
    };
    // One closing line for the whole run, whatever happened above it.
    println!("summary: {totals}");
    result.and(fuzzed)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Args;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn forwarded(argv: &[&str]) -> Vec<String> {
        let cli = Cli::try_parse_from(argv).expect("arguments parse");
        cli.args
            .cargo_test_args()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn cargo_and_harness_args_are_forwarded_in_cargo_test_order() {
        assert_eq!(
            forwarded(&["test", "-p", "x", "--", "--nocapture"]),
            ["test", "--no-fail-fast", "-p", "x", "--", "--nocapture"]
        );
        assert_eq!(
            forwarded(&["test", "--", "--nocapture"]),
            ["test", "--no-fail-fast", "--workspace", "--", "--nocapture"]
        );
        assert_eq!(
            forwarded(&["test", "--release", "ebpf::"]),
            [
                "test",
                "--no-fail-fast",
                "--workspace",
                "--release",
                "ebpf::"
            ]
        );
        assert_eq!(
            forwarded(&["test", "--package=x"]),
            ["test", "--no-fail-fast", "--package=x"]
        );
        assert_eq!(
            forwarded(&["test"]),
            ["test", "--no-fail-fast", "--workspace"]
        );
    }
}
