//! The capture module's only unsafe code: `getsockopt(SO_NETNS_COOKIE)`, which neither std nor
//! rustix wraps, and the `bpf()` link commands aya has no API for ([`bpf`]).
#![allow(
    unsafe_code,
    reason = "getsockopt and these bpf() commands have no safe wrapper"
)]

pub(super) mod bpf;

use std::{
    io,
    os::fd::{AsFd, AsRawFd as _},
};

/// `SO_NETNS_COOKIE` in asm-generic/socket.h (all architectures Ferrule runs on).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// Cookie of the network namespace `socket` was created in: the value eBPF programs get from
/// `bpf_get_netns_cookie` for sockets of that namespace, so it names a pod in the maps.
pub fn netns_cookie_of(socket: &impl AsFd) -> io::Result<u64> {
    let fd = socket.as_fd();
    let mut cookie: u64 = 0;
    let mut len = libc::socklen_t::try_from(size_of::<u64>()).expect("8 fits in socklen_t");
    // SAFETY: `fd` is open for the borrow's duration; `cookie` and `len` are live locals and
    // `len` holds the size of `cookie`, so the kernel writes at most that many bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::try_from(len).ok() != Some(size_of::<u64>()) {
        return Err(io::Error::other(
            "SO_NETNS_COOKIE returned an unexpected size",
        ));
    }
    Ok(cookie)
}
