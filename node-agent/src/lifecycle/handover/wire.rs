//! One JSON message per packet on a `SOCK_SEQPACKET` Unix socket, each optionally carrying a
//! file descriptor (`SCM_RIGHTS`). Seqpacket keeps message boundaries and ties a descriptor to
//! its message, which a byte stream does not; neither std nor tokio pass descriptors, rustix
//! does. Blocking calls: a handover is rare and runs on threads of its own.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType, sockopt,
};

use super::Message;

/// Larger than any message (a pod spec is a few KiB).
const MAX_MESSAGE: usize = 256 * 1024;

/// A connected handover socket.
#[derive(Debug)]
pub struct Channel(OwnedFd);

/// The socket a running agent waits for its successor on.
#[derive(Debug)]
pub struct Listener(OwnedFd);

fn seqpacket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

impl Listener {
    /// Binds `path` (replacing a stale socket), usable by its owner only from the start.
    pub fn bind(path: &Path) -> io::Result<Self> {
        let fd = crate::lifecycle::private_socket::bind(path, SocketType::SEQPACKET)?;
        rustix::net::listen(&fd, 4)?;
        Ok(Self(fd))
    }

    /// The next agent that connects, if it runs as our user (the socket's mode already keeps
    /// others out; this also refuses a process that got hold of a descriptor to it).
    pub fn accept(&self) -> io::Result<Channel> {
        loop {
            let fd = rustix::net::accept_with(&self.0, rustix::net::SocketFlags::CLOEXEC)?;
            let peer = sockopt::socket_peercred(&fd)?;
            if peer.uid == rustix::process::geteuid() {
                return Ok(Channel(fd));
            }
            tracing::warn!(
                uid = peer.uid.as_raw(),
                pid = peer.pid.as_raw_nonzero().get(),
                "refusing a handover request from another user"
            );
        }
    }
}

impl Channel {
    /// Connects to the agent listening on `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        let fd = seqpacket()?;
        rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
        Ok(Self(fd))
    }

    pub fn send(&self, message: &Message, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let bytes = serde_json::to_vec(message).map_err(io::Error::other)?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds;
        if let Some(fd) = fd {
            fds = [fd];
            control.push(SendAncillaryMessage::ScmRights(&fds));
        }
        let iov = [IoSlice::new(&bytes)];
        rustix::net::sendmsg(&self.0, &iov, &mut control, SendFlags::NOSIGNAL)?;
        Ok(())
    }

    /// The next message and its descriptor; `None` once the other side closed.
    pub fn recv(&self) -> io::Result<Option<(Message, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            rustix::net::recvmsg(&self.0, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?
        };
        let mut fd = None;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                // More than one descriptor is a protocol error; closing the extras is enough.
                fd = fds.into_iter().next().or(fd);
            }
        }
        if received.bytes == 0 {
            return Ok(None);
        }
        let message = serde_json::from_slice(&buf[..received.bytes])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Some((message, fd)))
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
