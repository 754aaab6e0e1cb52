//! Every listening socket the agent has, by name, so that it can hand them to its successor;
//! and the sockets it inherited from its predecessor, taken by name instead of binding anew.
//!
//! Names: `enroll`, `metrics`, `readiness`, and `pod/<uid>/<kind>` for in-pod listeners.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use tokio::net::{TcpListener, UnixListener};

#[derive(Debug, Default)]
pub struct Listeners {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// From the previous agent, not taken yet.
    inherited: BTreeMap<String, OwnedFd>,
    /// Duplicates of the listeners in use, to hand over.
    held: BTreeMap<String, OwnedFd>,
}

impl Listeners {
    pub fn inherit(fds: BTreeMap<String, OwnedFd>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                inherited: fds,
                held: BTreeMap::new(),
            }),
        }
    }

    /// The TCP listener `name`: the inherited socket if there is one (and `accept` agrees it
    /// is the right one), otherwise what `bind` makes. Must be called inside a Tokio runtime.
    pub fn tcp(
        &self,
        name: &str,
        accept: impl Fn(&std::net::TcpListener) -> bool,
        bind: impl FnOnce() -> io::Result<TcpListener>,
    ) -> io::Result<TcpListener> {
        let inherited = self.take_inherited(name).and_then(|fd| {
            let std = std::net::TcpListener::from(fd);
            let fits = accept(&std);
            if !fits {
                tracing::warn!(
                    name,
                    "inherited listener is not the expected one; binding a new one"
                );
            }
            fits.then_some(std)
        });
        let listener = match inherited {
            Some(std) => {
                std.set_nonblocking(true)?;
                TcpListener::from_std(std)?
            }
            None => bind()?,
        };
        self.hold(name, &listener)?;
        Ok(listener)
    }

    /// A node-network TCP listener on `addr` (port 0: any port), inherited or bound anew.
    pub fn node_tcp(&self, name: &str, addr: SocketAddr) -> io::Result<TcpListener> {
        let fits = |l: &std::net::TcpListener| {
            l.local_addr()
                .is_ok_and(|bound| bound == addr || (addr.port() == 0 && bound.ip() == addr.ip()))
        };
        self.tcp(name, fits, || {
            let std = std::net::TcpListener::bind(addr)?;
            std.set_nonblocking(true)?;
            TcpListener::from_std(std)
        })
    }

    /// The Unix-socket listener `name`, inherited or bound by `bind`.
    pub fn unix(
        &self,
        name: &str,
        bind: impl FnOnce() -> io::Result<UnixListener>,
    ) -> io::Result<UnixListener> {
        let listener = match self.take_inherited(name) {
            Some(fd) => {
                let std = std::os::unix::net::UnixListener::from(fd);
                std.set_nonblocking(true)?;
                UnixListener::from_std(std)?
            }
            None => bind()?,
        };
        self.hold(name, &listener)?;
        Ok(listener)
    }

    /// Whether a listener `name` was inherited and not taken yet.
    pub fn inherited(&self, name: &str) -> bool {
        self.lock().inherited.contains_key(name)
    }

    /// Forgets the listeners whose names start with `prefix` (a pod that left).
    pub fn release(&self, prefix: &str) {
        let mut inner = self.lock();
        inner.held.retain(|name, _| !name.starts_with(prefix));
        inner.inherited.retain(|name, _| !name.starts_with(prefix));
    }

    /// Duplicates of every listener in use, for a successor.
    pub fn snapshot(&self) -> io::Result<Vec<(String, OwnedFd)>> {
        self.lock()
            .held
            .iter()
            .map(|(name, fd)| Ok((name.clone(), fd.try_clone()?)))
            .collect()
    }

    /// Closes our copies of every listener (handed over: the successor holds them now).
    pub fn close_all(&self) {
        let mut inner = self.lock();
        inner.held.clear();
        inner.inherited.clear();
    }

    /// Closes inherited listeners nothing took (their pod left during the handover) and says
    /// which.
    pub fn discard_unclaimed(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().inherited)
            .into_keys()
            .collect()
    }

    fn take_inherited(&self, name: &str) -> Option<OwnedFd> {
        self.lock().inherited.remove(name)
    }

    fn hold(&self, name: &str, listener: &impl AsFd) -> io::Result<()> {
        let fd = listener.as_fd().try_clone_to_owned()?;
        self.lock().held.insert(name.to_owned(), fd);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The name of a pod's listener of `kind` (`outbound`, `outbound6`, `inbound`, `peers`).
pub fn pod_listener(uid: &str, kind: &str) -> String {
    format!("pod/{uid}/{kind}")
}

/// The prefix of every listener of a pod.
pub fn pod_prefix(uid: &str) -> String {
    format!("pod/{uid}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> TcpListener {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        TcpListener::from_std(std).unwrap()
    }

    #[tokio::test]
    async fn a_successor_takes_the_same_socket() {
        let old = Listeners::default();
        let first = old.tcp("metrics", |_| true, || Ok(bound())).unwrap();
        let addr = first.local_addr().unwrap();
        let fds: BTreeMap<_, _> = old.snapshot().unwrap().into_iter().collect();
        drop(first);
        old.close_all();

        let new = Listeners::inherit(fds);
        assert!(new.inherited("metrics"));
        let taken = new
            .tcp("metrics", |_| true, || panic!("must not bind"))
            .unwrap();
        assert_eq!(taken.local_addr().unwrap(), addr);
        // Connections made while the socket changed hands are accepted by the new owner.
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_, peer) = taken.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }

    #[tokio::test]
    async fn a_listener_that_does_not_fit_is_replaced() {
        let old = Listeners::default();
        let _kept = old.tcp("pod/a/inbound", |_| true, || Ok(bound())).unwrap();
        let fds = old.snapshot().unwrap().into_iter().collect();
        let new = Listeners::inherit(fds);
        let mut bound_new = false;
        new.tcp(
            "pod/a/inbound",
            |_| false,
            || {
                bound_new = true;
                Ok(bound())
            },
        )
        .unwrap();
        assert!(bound_new);
    }

    #[test]
    fn released_pods_are_not_handed_over() {
        let fds = [("pod/a/inbound", "pod/b/inbound")]
            .iter()
            .flat_map(|(a, b)| [*a, *b])
            .map(|name| {
                let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                (name.to_owned(), OwnedFd::from(std))
            })
            .collect();
        let listeners = Listeners::inherit(fds);
        listeners.release(&pod_prefix("a"));
        assert!(!listeners.inherited("pod/a/inbound"));
        assert_eq!(listeners.discard_unclaimed(), ["pod/b/inbound"]);
    }
}
