//! `bpf()` commands on pinned links that aya 0.14 has no public API for: aya opens a link pin
//! only as a `PinnedLink`, which exposes neither its fd nor a cgroup link's cgroup, and it calls
//! `BPF_LINK_UPDATE` only internally (for XDP and tc links).

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

// Commands and flags of include/uapi/linux/bpf.h (stable kernel ABI).
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_UPDATE: libc::c_long = 29;
/// `BPF_LINK_UPDATE` only if the link still runs the given old program.
const BPF_F_REPLACE: u32 = 1 << 2;

/// What the kernel reports about a cgroup link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::capture) struct LinkInfo {
    /// The link's id: stays the same while its program is replaced.
    pub(in crate::capture) id: u32,
    pub(in crate::capture) program_id: u32,
    /// 0 once the cgroup was removed: the link is defunct and runs nothing.
    pub(in crate::capture) cgroup_id: u64,
}

/// `struct bpf_link_info` up to its cgroup member (the kernel fills in what fits).
#[repr(C)]
#[derive(Default)]
#[allow(
    dead_code,
    reason = "the kernel writes every field; only some are read"
)]
struct RawLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    padding: u32,
    cgroup_id: u64,
    attach_type: u32,
    padding2: u32,
}

/// `bpf_attr` for `BPF_OBJ_GET`.
#[repr(C)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `bpf_attr` for `BPF_PROG_GET_FD_BY_ID`.
#[repr(C)]
struct GetFdById {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `bpf_attr` for `BPF_LINK_UPDATE`.
#[repr(C)]
struct LinkUpdate {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Opens the object (here: a link) pinned at `path`.
pub(in crate::capture) fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    bpf_fd(BPF_OBJ_GET, &mut attr)
}

/// Opens the loaded program with id `id`.
pub(in crate::capture) fn program_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdById {
        id,
        next_id: 0,
        open_flags: 0,
    };
    bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut attr)
}

pub(in crate::capture) fn link_info(link: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    let mut info = RawLinkInfo::default();
    let mut attr = InfoByFd {
        bpf_fd: fd_number(link),
        info_len: u32::try_from(size_of::<RawLinkInfo>()).expect("32 fits in u32"),
        info: (&raw mut info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(LinkInfo {
        id: info.id,
        program_id: info.prog_id,
        cgroup_id: info.cgroup_id,
    })
}

/// Makes `link` run `new` instead of `old`, in one step: the kernel swaps the program in the
/// cgroup's run array in place, so every packet or connect sees one of the two. Fails with
/// `EPERM` if the link no longer runs `old` (someone else replaced it meanwhile), and with
/// `ENOLINK` if the link is defunct.
pub(in crate::capture) fn update_link(
    link: BorrowedFd<'_>,
    new: BorrowedFd<'_>,
    old: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut attr = LinkUpdate {
        link_fd: fd_number(link),
        new_prog_fd: fd_number(new),
        flags: BPF_F_REPLACE,
        old_prog_fd: fd_number(old),
    };
    bpf(BPF_LINK_UPDATE, &mut attr).map(drop)
}

fn fd_number(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).expect("an open fd is not negative")
}

/// A command that returns a new file descriptor.
fn bpf_fd<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: on success these commands return a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live `#[repr(C)]` prefix of `union bpf_attr` for `cmd` and the size
    // passed is its own, so the kernel reads and writes only within it (zero-filling the rest
    // of its copy); any pointer in it refers to a buffer the caller keeps alive for this call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<T>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}
