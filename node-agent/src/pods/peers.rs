//! Who is on the other end: a local endpoint inside each pod (`http://127.0.0.1:15021`) where an
//! application asks which SPIFFE identity the mesh verified for one of its connections, by the
//! addresses it sees on its own socket. Only the pod's own connections are visible: the endpoint
//! lives in the pod's network namespace and answers from that pod's table.
//!
//! `GET /v1/peer?local=IP:PORT[&remote=IP:PORT]` → `200 {"direction", "local", "remote",
//! "peer_identity", "local_identity"}`, `404` for a connection the mesh does not carry, `400`
//! for a malformed query.

mod server;

pub use server::serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;

/// Where the endpoint listens, in every pod's network namespace.
pub const PEER_PORT: u16 = 15021;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    /// `outbound`: the app opened the connection; `inbound`: it accepted it.
    pub direction: &'static str,
    /// The app's socket's own address.
    pub local: SocketAddr,
    /// The addresses the app may see as the other end (the original destination, or what
    /// `getpeername` returns on a redirected socket).
    pub remote: Vec<SocketAddr>,
    pub peer_identity: String,
    pub local_identity: String,
}

/// The mesh connections of one pod, by the app's local address (several inbound connections
/// share their local address and differ in the remote one).
#[derive(Debug, Default)]
pub struct PeerDirectory {
    by_local: Mutex<HashMap<SocketAddr, Vec<PeerInfo>>>,
}

/// Keeps a connection listed until dropped (when the connection closes).
#[derive(Debug)]
pub struct Listed {
    directory: Weak<PeerDirectory>,
    local: SocketAddr,
    remote: Vec<SocketAddr>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        let Some(directory) = self.directory.upgrade() else {
            return;
        };
        let mut by_local = directory.lock();
        if let Some(entries) = by_local.get_mut(&self.local) {
            entries.retain(|e| e.remote != self.remote);
            if entries.is_empty() {
                by_local.remove(&self.local);
            }
        }
    }
}

/// Why a query found no single connection.
#[derive(Debug, PartialEq, Eq)]
pub enum NotFound {
    None,
    /// Several connections share the local address; the remote one tells them apart.
    Ambiguous(usize),
}

impl PeerDirectory {
    pub fn list(self: &Arc<Self>, info: PeerInfo) -> Listed {
        let (local, remote) = (info.local, info.remote.clone());
        self.lock().entry(local).or_default().push(info);
        Listed {
            directory: Arc::downgrade(self),
            local,
            remote,
        }
    }

    /// The connection whose app-side address is `local` and, if given, whose other end is
    /// `remote`.
    pub fn find(
        &self,
        local: SocketAddr,
        remote: Option<SocketAddr>,
    ) -> Result<PeerInfo, NotFound> {
        let by_local = self.lock();
        let candidates: Vec<&PeerInfo> = by_local
            .get(&local)
            .into_iter()
            .flatten()
            .filter(|e| remote.is_none_or(|r| e.remote.contains(&r)))
            .collect();
        match candidates.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(NotFound::None),
            many => Err(NotFound::Ambiguous(many.len())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<PeerInfo>>> {
        self.by_local.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(local: &str, remote: &str) -> PeerInfo {
        PeerInfo {
            direction: "outbound",
            local: local.parse().unwrap(),
            remote: vec![remote.parse().unwrap()],
            peer_identity: "spiffe://example.org/ns/a/sa/db".into(),
            local_identity: "spiffe://example.org/ns/a/sa/web".into(),
        }
    }

    #[test]
    fn a_connection_is_found_while_listed_and_only_with_its_remote() {
        let directory = Arc::new(PeerDirectory::default());
        let listed = directory.list(info("127.0.0.1:40000", "10.0.0.9:5432"));
        let local = "127.0.0.1:40000".parse().unwrap();
        assert!(directory.find(local, None).is_ok());
        assert!(
            directory
                .find(local, Some("10.0.0.9:5432".parse().unwrap()))
                .is_ok()
        );
        let other = Some("10.0.0.8:5432".parse().unwrap());
        assert_eq!(directory.find(local, other), Err(NotFound::None));
        drop(listed);
        assert_eq!(directory.find(local, None), Err(NotFound::None));
    }

    #[test]
    fn inbound_connections_sharing_a_local_address_need_the_remote_one() {
        let directory = Arc::new(PeerDirectory::default());
        let _a = directory.list(info("10.0.0.9:80", "10.0.0.9:41000"));
        let _b = directory.list(info("10.0.0.9:80", "10.0.0.9:41001"));
        let local = "10.0.0.9:80".parse().unwrap();
        assert_eq!(directory.find(local, None), Err(NotFound::Ambiguous(2)));
        let b = directory.find(local, Some("10.0.0.9:41001".parse().unwrap()));
        assert!(b.is_ok());
    }
}
