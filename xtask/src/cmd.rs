//! Running external commands with errors that say which command failed and how.

use std::{
    env, fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use anyhow::{Context as _, bail};

/// The workspace root, where every task runs its commands.
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `cargo` of the toolchain running this xtask (what `cargo xtask` was invoked with).
///
/// Without the variables cargo sets for the package it runs (`cargo run`, `cargo test`): some
/// build scripts (ring's) track `CARGO_MANIFEST_DIR`, so inheriting xtask's would make this
/// build rebuild what a plain `cargo build` built, and the other way round.
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    in_workspace_root(&mut cmd);
    cmd
}

/// `cargo` of the nightly toolchain (through rustup), for what only nightly can build (the
/// fuzz targets' sanitizers), in the workspace root like [`cargo`].
pub fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]);
    in_workspace_root(&mut cmd);
    // Nightly's cargo tells its subcommands (cargo-fuzz) where it is; stable's must not leak.
    cmd.env_remove("CARGO").env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

/// Runs `cmd` in the workspace root, without the variables cargo set for xtask itself.
fn in_workspace_root(cmd: &mut Command) {
    cmd.current_dir(workspace_root());
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else {
            continue;
        };
        let set_for_the_package = name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if set_for_the_package {
            cmd.env_remove(name);
        }
    }
}

/// Runs `cmd` with inherited stdio, echoing it first; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Like [`run`], but also hands each stdout line to `on_line` as it is printed.
pub fn run_streaming(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> anyhow::Result<()> {
    eprintln!("$ {}", display(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    let stdout = child.stdout.take().context("child stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("reading the output of `{}`", display(cmd)))?;
        println!("{line}");
        on_line(&line);
    }
    let status = child.wait().context("waiting for the command")?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout; fails with its stderr unless it exits 0.
pub fn stdout(cmd: &mut Command) -> anyhow::Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        bail!("`{}` failed ({status}): {}", display(cmd), stderr.trim());
    }
    String::from_utf8(stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// Runs `cmd` with its stderr shown (cargo's progress) and returns its stdout; fails unless it
/// exits 0.
pub fn stdout_showing_stderr(cmd: &mut Command) -> anyhow::Result<String> {
    eprintln!("$ {}", display(cmd));
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !output.status.success() {
        bail!("`{}` failed ({})", display(cmd), output.status);
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// Whether `program` is an executable file in one of the `PATH` directories.
pub fn on_path(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether this process runs with effective uid 0 (from /proc, to stay free of unsafe libc).
pub fn is_root() -> anyhow::Result<bool> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no effective uid in /proc/self/status")?;
    Ok(effective_uid == "0")
}

fn display(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}
