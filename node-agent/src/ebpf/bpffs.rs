//! The BPF filesystem, where pinned programs and maps outlive the agent process (so an agent
//! restart never leaves pods uncaptured). Looking is `ferrule_node_checks::bpffs` (shared with
//! `ferrule check`); mounting is here.

use std::{fs, path::Path};

use ferrule_node_checks::bpffs::is_bpffs;
use rustix::mount::MountFlags;

use super::Error;

/// What [`ensure_bpffs`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bpffs {
    AlreadyMounted,
    MountedNow,
}

/// Makes sure a bpffs is mounted at `path` (creating the directory if needed); mounts one if
/// not. Idempotent. Needs `CAP_SYS_ADMIN` to mount.
pub fn ensure_bpffs(path: &Path) -> Result<Bpffs, Error> {
    let error = |source: std::io::Error| Error::Bpffs {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(path).map_err(error)?;
    if is_bpffs(path).map_err(error)? {
        return Ok(Bpffs::AlreadyMounted);
    }
    rustix::mount::mount("bpf", path, "bpf", MountFlags::empty(), None)
        .map_err(|errno| error(errno.into()))?;
    Ok(Bpffs::MountedNow)
}
