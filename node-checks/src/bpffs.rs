//! Where pins live: whether a directory is on a BPF filesystem, and where the agent mounts one
//! when it is not. The agent mounts (`ferrule_node_agent::ebpf::ensure_bpffs`); these only look.

use std::path::Path;

use rustix::fs::statfs;

/// Where bpffs is conventionally mounted; systemd mounts it there, bare machines may not.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// `f_type` of a bpffs mount (`BPF_FS_MAGIC` in linux/magic.h).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_below_the_conventional_root_mount_it_there() {
        assert_eq!(
            mount_point_for(Path::new("/sys/fs/bpf/ferrule")),
            Path::new(BPFFS_ROOT)
        );
        assert_eq!(
            mount_point_for(Path::new("/run/ferrule/bpf")),
            Path::new("/run/ferrule/bpf")
        );
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(nearest_existing(&tmp.path().join("a/b")), tmp.path());
        assert!(!is_bpffs(tmp.path()).unwrap(), "a tempdir is not on bpffs");
    }
}
