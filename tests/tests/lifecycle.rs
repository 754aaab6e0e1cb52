//! The agent's lifecycle end to end, with the real binaries on namespace nodes and pods:
//! upgrades that lose no connection, a drain that is bounded, repeated restarts that leak
//! nothing (`upgrade`), and uninstalling Ferrule from a node (`uninstall`).

// A test crate's root looks for modules beside it, not in lifecycle/.
#[path = "lifecycle/uninstall.rs"]
mod uninstall;
#[path = "lifecycle/upgrade.rs"]
mod upgrade;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use ferrule_tests::Child;
use ferrule_tests::cluster::Pod;

/// What the apps serve; seen on the wire only when traffic is plaintext.
const MARKER: &str = "ferrule-lifecycle-marker-5c1e";

/// python3's http.server in `pod`, serving MARKER at /marker.txt on `port`.
fn marker_server(pod: &Pod, work: &Path, port: u16) -> Child {
    let dir = work.join(format!("www-{}", pod.name));
    std::fs::create_dir_all(&dir).expect("web root");
    std::fs::write(dir.join("marker.txt"), format!("{MARKER}\n")).expect("marker file");
    ferrule_tests::apps::http_server(pod, &dir, port)
}

/// GET http://ip:port/marker.txt with curl run as `curl` (a pod's or a node's command); what
/// came back, or "" when nothing did.
fn fetch(mut curl: Command, ip: Ipv4Addr, port: u16) -> String {
    let out = curl
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{ip}:{port}/marker.txt"))
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
