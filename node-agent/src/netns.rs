//! Sockets inside a pod's network namespace while the agent itself stays in the node's.
//!
//! A socket belongs to the namespace of the thread that created it, for its whole life. So each
//! [`Netns`] owns one small thread that entered the namespace once (`setns(CLONE_NEWNET)`) and
//! does nothing but `socket()`; binding, listening and connecting then happen from any Tokio task.
//! Tokio's own threads never change namespace, so nothing else the agent does can leak into a pod.

#[cfg(test)]
mod tests;
mod worker;

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::net::{TcpListener, TcpSocket};

use worker::Worker;

/// Accept queue length of in-pod listeners; sized for connection bursts from busy apps.
const LISTEN_BACKLOG: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening network namespace {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("entering network namespace {path} (is it a netns file?): {source}")]
    Enter { path: PathBuf, source: io::Error },
    #[error("starting the socket thread for network namespace {path}: {source}")]
    Thread { path: PathBuf, source: io::Error },
}

/// A network namespace (e.g. `/run/netns/NAME` or `/proc/PID/ns/net`) and a socket factory in it.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    worker: Worker,
    cookie: OnceLock<u64>,
}

impl Netns {
    /// Opens the namespace and starts its socket thread; fails if `path` is not a netns.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        let worker = Worker::spawn(file).map_err(|e| match e {
            worker::SpawnError::Thread(source) => NetnsError::Thread {
                path: path.clone(),
                source,
            },
            worker::SpawnError::Enter(source) => NetnsError::Enter {
                path: path.clone(),
                source,
            },
        })?;
        Ok(Self {
            path,
            worker,
            cookie: OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An unbound TCP socket in this namespace, to connect to an app in the pod.
    ///
    /// Blocks for one round trip to the namespace's thread (a `socket()` call), which is short
    /// enough to do from an async task.
    pub fn tcp_socket(&self, v6: bool) -> io::Result<TcpSocket> {
        self.worker.socket(v6)
    }

    /// A listener on `addr` in this namespace (`SO_REUSEADDR`, so an agent restart can rebind
    /// while old connections linger in TIME_WAIT). Must be called inside a Tokio runtime.
    pub fn tcp_listener(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = self.tcp_socket(addr.is_ipv6())?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    }

    /// The kernel's cookie for this namespace (`SO_NETNS_COOKIE`): what eBPF programs see as
    /// `bpf_get_netns_cookie`, so map keys can name the pod. Stable for the namespace's life.
    pub fn cookie(&self) -> io::Result<u64> {
        if let Some(cookie) = self.cookie.get() {
            return Ok(*cookie);
        }
        let cookie = crate::capture::netns_cookie_of(&self.tcp_socket(false)?)?;
        Ok(*self.cookie.get_or_init(|| cookie))
    }
}

/// The cookie of the calling thread's own network namespace (the node's, for the agent).
pub fn current_cookie() -> io::Result<u64> {
    crate::capture::netns_cookie_of(&TcpSocket::new_v4()?)
}
