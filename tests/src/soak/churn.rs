//! What runs during a soak: legitimate connections between the nodes, and the churn around
//! them (pod enroll/unenroll, policy apply/delete, revoke/lift). Each runs on its own thread
//! until `stop`.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Scope;
use std::time::Duration;

use crate::mesh::{Mesh, TRUST_DOMAIN};
use crate::process::Child;

const PORT: u16 = 8080;
/// Failures kept for the report.
const EXAMPLES: usize = 5;

fn script() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/stream.py")
}

#[derive(Debug, Default)]
pub struct Counters {
    connections_ok: AtomicU64,
    connections_failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    enrolls: AtomicU64,
    unenrolls: AtomicU64,
    policy_changes: AtomicU64,
    revocations: AtomicU64,
    churn_errors: AtomicU64,
}

impl Counters {
    pub fn failed_connections(&self) -> u64 {
        self.connections_failed.load(Ordering::Relaxed)
    }

    pub fn failure_examples(&self) -> String {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join(" | ")
    }

    fn connection(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => drop(self.connections_ok.fetch_add(1, Ordering::Relaxed)),
            Err(why) => {
                self.connections_failed.fetch_add(1, Ordering::Relaxed);
                let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                if failures.len() < EXAMPLES {
                    failures.push(why);
                }
            }
        }
    }

    fn count(&self, counter: &AtomicU64, ok: bool) {
        counter.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.churn_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        writeln!(
            f,
            "legitimate connections: {} ok, {} failed",
            get(&self.connections_ok),
            get(&self.connections_failed)
        )?;
        writeln!(
            f,
            "churn: {} enrolls, {} unenrolls, {} policy changes, {} revocations/lifts ({} churn calls failed)",
            get(&self.enrolls),
            get(&self.unenrolls),
            get(&self.policy_changes),
            get(&self.revocations),
            get(&self.churn_errors)
        )
    }
}

/// Line-echo servers in pod 0 of every node.
pub fn start_servers(mesh: &Mesh) -> Vec<Child> {
    (0..mesh.cluster.nodes().len())
        .map(|node| {
            let child = Child::spawn(
                mesh.pod(node, 0)
                    .command("python3")
                    .arg("-u")
                    .arg(script())
                    .args(["chat", &PORT.to_string()]),
            );
            child.wait_for_line("ready", Duration::from_secs(10));
            child
        })
        .collect()
}

/// Certificates in the control plane's inventory.
pub fn issued_certificates(mesh: &Mesh) -> usize {
    let out = mesh.ferrule(&["-o", "json", "certs"]);
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).map_or(0, |c| c.len())
}

pub fn spawn_all<'s>(
    scope: &'s Scope<'s, '_>,
    mesh: &'s Mesh,
    counters: &'s Counters,
    stop: &'s AtomicBool,
) {
    let nodes = mesh.cluster.nodes().len();
    for node in 0..nodes {
        // Pod 1 of each node talks to pod 0 of the next node: always across the nodes.
        let to = (node + 1) % nodes;
        scope.spawn(move || {
            until(stop, Duration::ZERO, || {
                counters.connection(once(mesh, node, to))
            })
        });
        scope.spawn(move || {
            let mut enrolled = false;
            until(stop, Duration::from_secs(2), || {
                let (status, _) = match enrolled {
                    false => mesh.enroll(node, 2, "strict"),
                    true => mesh.unenroll(node, 2),
                };
                let counter = if enrolled {
                    &counters.unenrolls
                } else {
                    &counters.enrolls
                };
                counters.count(counter, (200..300).contains(&status));
                enrolled = !enrolled;
            });
        });
    }
    scope.spawn(move || policy_churn(mesh, counters, stop));
    scope.spawn(move || revocation_churn(mesh, counters, stop));
}

/// Runs `step` every `pause` until `stop`.
fn until(stop: &AtomicBool, pause: Duration, mut step: impl FnMut()) {
    while !stop.load(Ordering::Relaxed) {
        step();
        std::thread::sleep(pause);
    }
}

/// One line from pod 1 of `node` to pod 0 of `to` and back.
fn once(mesh: &Mesh, node: usize, to: usize) -> Result<(), String> {
    let ip = mesh.pod(to, 0).ip.to_string();
    let out = mesh
        .pod(node, 1)
        .command("python3")
        .arg(script())
        .args(["once", &ip, &PORT.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match text.as_str() {
        "ok" => Ok(()),
        _ => Err(format!("pod-{node}-1 -> pod-{to}-0: {text}")),
    }
}

/// An ALLOW policy for the servers that admits the whole namespace: applying and deleting it
/// changes every agent's configuration without refusing the legitimate connections.
fn policy_churn(mesh: &Mesh, counters: &Counters, stop: &AtomicBool) {
    let file = mesh.work.path().join("soak-policy.yaml");
    let policy = "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: soak-allow\n  namespace: shop\nspec:\n  action: ALLOW\n  rules:\n    - from: [{namespace: shop}]\n";
    std::fs::write(&file, policy).expect("writing the soak policy");
    let file = file.to_string_lossy().into_owned();
    let mut applied = false;
    until(stop, Duration::from_secs(5), || {
        let out = match applied {
            false => mesh.ferrule(&["policy", "apply", "-f", &file]),
            true => mesh.ferrule(&["policy", "delete", "shop/soak-allow"]),
        };
        counters.count(&counters.policy_changes, out.status.success());
        applied = !applied;
    });
}

/// Revokes and lifts the identity of pod 3 of each node in turn (it serves no connection).
fn revocation_churn(mesh: &Mesh, counters: &Counters, stop: &AtomicBool) {
    let mut round = 0usize;
    until(stop, Duration::from_secs(5), || {
        let node = (round / 2) % mesh.cluster.nodes().len();
        let id = format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/pod-{node}-3");
        let out = match round % 2 {
            0 => mesh.ferrule(&["revoke", "--identity", &id, "--reason", "soak"]),
            _ => mesh.ferrule(&["revoke", "--identity", &id, "--lift"]),
        };
        counters.count(&counters.revocations, out.status.success());
        round += 1;
    });
}
