//! A client for the enrollment API as tests drive it: curl on the Unix socket, the way an
//! operator or a CNI plugin would.

use std::path::Path;
use std::process::Command;

/// `METHOD http://agent<path>` on `socket`, with a JSON `body`; returns the HTTP status and body.
/// The status is 0 if no HTTP answer came (the agent is gone), so callers' assertions say so.
pub fn call(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    send(Command::new("curl"), socket, method, path, body)
}

/// [`call`] from a process running as `uid` (and gid), without supplementary groups.
pub fn call_as(
    uid: u32,
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut setpriv = Command::new("setpriv");
    setpriv.args([
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "curl",
    ]);
    send(setpriv, socket, method, path, body)
}

fn send(
    mut cmd: Command,
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    cmd.args([
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "--unix-socket",
    ])
    .arg(socket)
    .arg(format!("http://agent{path}"));
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json", "--data", body]);
    }
    let out = cmd
        .output()
        .expect("curl is installed by cargo xtask setup");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}
