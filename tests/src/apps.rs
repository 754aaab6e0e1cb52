//! Unmodified apps the tests run in pods.

use std::path::Path;
use std::time::Duration;

use crate::cluster::Pod;
use crate::process::Child;

/// python3's http.server in `pod`, serving `dir` on `port` of every address; returns once it
/// listens.
pub fn http_server(pod: &Pod, dir: &Path, port: u16) -> Child {
    let child = Child::spawn(
        pod.command("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "0.0.0.0",
                "--directory",
            ])
            .arg(dir),
    );
    child.wait_for_line("Serving HTTP", Duration::from_secs(10));
    child
}
