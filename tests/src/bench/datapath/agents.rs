//! The agents' processes as /proc sees them: CPU time and resident memory, client side first.

use std::time::Duration;

use super::{CLIENT, SERVER};
use crate::mesh::Mesh;

/// User plus system CPU time of both agents so far (all their threads).
pub fn cpu_time(mesh: &Mesh) -> Duration {
    [CLIENT.0, SERVER.0]
        .map(|node| mesh.agent(node).cpu_time())
        .into_iter()
        .sum()
}

/// Resident memory of `[client-side agent, server-side agent]`.
pub fn rss_kib(mesh: &Mesh) -> [u64; 2] {
    [CLIENT.0, SERVER.0].map(|node| mesh.agent(node).rss_kib())
}
