//! The commands that change the machine: `ip`, `nsenter`, `kill`. Each failure carries the
//! command line and what it printed, so a broken setup says which step broke.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::Error;

/// Where `ip netns add` keeps the namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// `NotRoot` unless this process runs with effective uid 0 (read from /proc, to stay free of
/// unsafe libc).
pub(super) fn require_root() -> Result<(), Error> {
    let status =
        fs::read_to_string("/proc/self/status").map_err(Error::io("reading /proc/self/status"))?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    match euid {
        Some("0") => Ok(()),
        _ => Err(Error::NotRoot),
    }
}

/// Runs `command` to completion; its stdout if it succeeded.
pub(super) fn run(command: &mut Command) -> Result<String, Error> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(Error::io(format!("starting {}", display(command))))?;
    check(&display(command), output)
}

/// Runs `ip -n NETNS -batch -` with `lines` on stdin: one process per namespace instead of one
/// per step keeps clusters with many pods quick to build.
pub(super) fn ip_batch(netns: &str, lines: &[String]) -> Result<(), Error> {
    let mut command = Command::new("ip");
    command.args(["-n", netns, "-batch", "-"]);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io(format!("starting {}", display(&command))))?;
    let script = lines.join("\n") + "\n";
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(script.as_bytes())
        .map_err(Error::io("writing to ip -batch"))?;
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(Error::io("waiting for ip -batch"))?;
    check(&format!("{} <<< {script:?}", display(&command)), output).map(drop)
}

fn check(command: &str, output: Output) -> Result<String, Error> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(Error::Command {
        command: command.to_owned(),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

fn display(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn netns_add(name: &str) -> Result<(), Error> {
    run(Command::new("ip").args(["netns", "add", name])).map(drop)
}

pub(super) fn netns_delete(name: &str) -> Result<(), Error> {
    run(Command::new("ip").args(["netns", "delete", name])).map(drop)
}

/// Names of the namespaces in /run/netns (none if the directory does not exist yet).
pub(super) fn netns_list() -> Result<Vec<String>, Error> {
    match fs::read_dir(NETNS_DIR) {
        Ok(entries) => Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("listing {NETNS_DIR}"))(e)),
    }
}

/// Kills every process whose network namespace is `name`, also those started without the
/// harness (e.g. by `ip netns exec`), which the cgroups would not catch.
pub(super) fn netns_kill_all(name: &str) -> Result<(), Error> {
    let pids = run(Command::new("ip").args(["netns", "pids", name]))?;
    let pids: Vec<&str> = pids.split_whitespace().collect();
    if pids.is_empty() {
        return Ok(());
    }
    // A process may exit between listing and killing; that is what we wanted anyway.
    let _ = run(Command::new("kill").arg("-KILL").args(&pids));
    Ok(())
}

/// Interface names in this process's network namespace.
pub(super) fn root_links() -> Result<Vec<String>, Error> {
    let out = run(Command::new("ip").args(["-o", "link", "show"]))?;
    Ok(out
        .lines()
        .filter_map(link_name)
        .map(str::to_owned)
        .collect())
}

/// The name in a line of `ip -o link show`: "7: name@peer: <FLAGS> ...".
fn link_name(line: &str) -> Option<&str> {
    let name = line.split(": ").nth(1)?;
    Some(name.split('@').next().unwrap_or(name))
}

pub(super) fn link_delete(name: &str) -> Result<(), Error> {
    run(Command::new("ip").args(["link", "delete", name])).map(drop)
}

/// Sets a sysctl inside a network namespace. nsenter rather than `ip netns exec`: the latter
/// also remounts /sys, which we do not need.
pub(super) fn sysctl_in(netns: &Path, key: &str, value: &str) -> Result<(), Error> {
    run(Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["--", "sysctl", "-qw", &format!("{key}={value}")]))
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::link_name;

    #[test]
    fn link_names_are_read_from_ip_o_link_lines() {
        let veth = "7: fr0a1b2cn0@if6: <BROADCAST,MULTICAST> mtu 1500 qdisc noop";
        assert_eq!(link_name(veth), Some("fr0a1b2cn0"));
        assert_eq!(link_name("1: lo: <LOOPBACK,UP> mtu 65536"), Some("lo"));
        assert_eq!(link_name(""), None);
    }
}
