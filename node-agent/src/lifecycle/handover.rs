//! The handover protocol between the running agent (the predecessor) and a new one, over the
//! Unix socket `handover.sock` next to the enrollment socket:
//!
//! ```text
//! new → old  Hello(version)
//!            old stops enrolling/unenrolling pods (waits for those in progress)
//! old → new  Listener{name} + fd   for every listening socket (repeated)
//! old → new  Pod(spec)             for every enrolled pod (repeated)
//! old → new  NodeIdentity(pem)     the node certificate and key: the successor needs no
//!                                  join credential, and the key never leaves agent memory
//! old → new  Ready(version)
//!            new adopts the pods on the inherited listeners, gets their certificates,
//!            serves the enrollment API, metrics and readiness on the inherited sockets
//! new → old  Serving
//! old → new  Draining{timeout_ms}  old stops accepting and drains; it keeps the socket open
//!                                  until it exits, so the new agent knows when it is gone
//! ```
//! If the new agent goes away before `Serving`, the old one carries on as if nothing happened.

mod give;
mod take;
mod wire;

use serde::{Deserialize, Serialize};

use super::AgentVersion;
use crate::enroll::PodSpec;

pub use give::{Giver, Handing, serve};
pub use take::{Inherited, Predecessor, take_over};

/// The socket file name, in the enrollment socket's directory.
pub const SOCKET_NAME: &str = "handover.sock";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    Hello(AgentVersion),
    Listener {
        name: String,
    },
    Pod(PodSpec),
    NodeIdentity(NodeIdentityPem),
    Ready(AgentVersion),
    Serving,
    Draining {
        timeout_ms: u64,
    },
    /// The running agent cannot hand over (it is stopping already).
    Refused {
        reason: String,
    },
}

/// The node certificate chain and private key as PEM; never printed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeIdentityPem(pub String);

impl std::fmt::Debug for NodeIdentityPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeIdentityPem(<redacted>)")
    }
}

/// Where the agent whose enrollment socket is `enroll_socket` listens for its successor.
pub fn socket_path(enroll_socket: &std::path::Path) -> std::path::PathBuf {
    enroll_socket.with_file_name(SOCKET_NAME)
}

#[cfg(test)]
mod tests;
