//! The BPF filesystem, where pinned programs and maps outlive the agent process (so an agent
//! restart never leaves pods uncaptured).

use std::{fs, path::Path};

use rustix::{fs::statfs, mount::MountFlags};

use super::Error;

/// Where bpffs is conventionally mounted; systemd mounts it there, bare machines may not.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// `f_type` of a bpffs mount (`BPF_FS_MAGIC` in linux/magic.h).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

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

/// The directory whose filesystem decides where pins under `dir` live: `dir` itself or, when it
/// does not exist yet, its nearest existing ancestor.
pub fn nearest_existing(dir: &Path) -> &Path {
    dir.ancestors().find(|p| p.exists()).unwrap_or(dir)
}

/// Where the agent mounts a bpffs for pins under `dir` that are not on one yet: the conventional
/// root when `dir` is below it, otherwise `dir` itself.
pub fn mount_point_for(dir: &Path) -> &Path {
    if dir.starts_with(BPFFS_ROOT) {
        Path::new(BPFFS_ROOT)
    } else {
        dir
    }
}

/// Whether `path` is on a bpffs (a mount point or any directory inside one).
pub fn is_bpffs(path: &Path) -> std::io::Result<bool> {
    let stat = statfs(path)?;
    // `f_type` is a signed word whose width depends on the libc; compare as the kernel's u32.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "magic is 32 bits"
    )]
    let fs_type = stat.f_type as u32;
    Ok(fs_type == BPF_FS_MAGIC)
}
