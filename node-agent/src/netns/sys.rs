//! The one socket option neither rustix nor socket2 wraps. All of this crate's netns `unsafe`
//! is here.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `SO_NETNS_COOKIE` (Linux 5.14) in asm-generic numbering, which x86_64 and aarch64 use.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace `socket` was created in.
pub(super) fn netns_cookie(socket: &impl AsFd) -> io::Result<u64> {
    let fd = socket.as_fd();
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `fd` is open for the borrow's duration; `cookie` and `len` are live locals and
    // `len` holds the size of `cookie`, so the kernel writes at most that many bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<u64>() {
        return Err(io::Error::other(format!(
            "SO_NETNS_COOKIE returned {len} bytes, expected 8"
        )));
    }
    Ok(cookie)
}
