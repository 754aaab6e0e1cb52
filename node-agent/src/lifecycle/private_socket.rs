//! Unix sockets that only their owner can connect to, from the moment they exist.
//!
//! `bind` then `chmod` leaves a window in which the socket file has the umask's mode and any
//! local user may connect (and keep that connection). Linux creates the file with the mode of
//! the socket's own inode (`unix_bind`), so an `fchmod` before `bind` closes the window; the
//! directory, when we create it, is the owner's alone too.

use std::fs::DirBuilder;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

use rustix::fs::Mode;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// Owner read/write: what `connect` needs.
const SOCKET_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// A socket of `kind` bound to `path` (a stale socket there is replaced), mode 0600 from its
/// creation on; not listening yet.
pub fn bind(path: &Path, kind: SocketType) -> io::Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let fd = rustix::net::socket_with(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(SOCKET_MODE))?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    Ok(fd)
}

/// A listening stream socket on `path`, for Tokio.
pub fn stream_listener(path: &Path) -> io::Result<tokio::net::UnixListener> {
    let fd = bind(path, SocketType::STREAM)?;
    rustix::net::listen(&fd, 128)?;
    let std = std::os::unix::net::UnixListener::from(fd);
    std.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(std)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_socket_is_owner_only_as_bind_creates_it_and_so_is_a_new_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/ferrule/agent.sock");
        // A plain bind leaves 0777 minus the umask (0755 usually) until someone chmods it.
        let _fd = bind(&path, SocketType::STREAM).unwrap();
        assert_eq!(mode(&path), 0o600, "socket mode right after bind");
        assert_eq!(mode(path.parent().unwrap()), 0o700, "created directory");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_the_listener_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        drop(stream_listener(&path).unwrap());
        let listener = stream_listener(&path).unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::UnixStream::connect(&path), listener.accept());
        client.unwrap();
        accepted.unwrap();
    }
}
