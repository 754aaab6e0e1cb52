//! The filesystems the agent needs: a bpffs for its pins and the cgroup v2 hierarchy its
//! programs attach to.

use std::{fs, path::Path};

use super::Check;
use crate::bpffs::{self, BPFFS_ROOT};
use crate::cgroup;

const BPFFS: &str = "bpffs";
const CGROUP2: &str = "cgroup2";
const FILESYSTEMS: &str = "/proc/filesystems";
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Whether pins under `pin_dir` will be on a bpffs: already, or once the agent mounts one (what
/// it does on start when none is there, see `capture::Layout`).
pub(super) fn bpffs(pin_dir: &Path) -> Check {
    let existing = bpffs::nearest_existing(pin_dir);
    match bpffs::is_bpffs(existing) {
        Ok(true) if existing == pin_dir => Check::ok(
            BPFFS,
            format!("{} is on bpffs{}", pin_dir.display(), pins_note(pin_dir)),
        ),
        Ok(true) => Check::ok(
            BPFFS,
            format!(
                "{} is on bpffs (the agent creates {})",
                existing.display(),
                pin_dir.display()
            ),
        ),
        Ok(false) => {
            let kernel_has_bpffs = fs::read_to_string(FILESYSTEMS)
                .map(|list| lists_filesystem(&list, "bpf"))
                .unwrap_or(true);
            unmounted_bpffs(pin_dir, kernel_has_bpffs)
        }
        Err(e) => Check::fail(
            BPFFS,
            format!(
                "cannot tell which filesystem {} is on: {e}",
                existing.display()
            ),
            "check the pin directory (--pin-dir, FERRULE_PIN_DIR or capture.pin_dir)",
        ),
    }
}

/// Programs an earlier agent pinned (one `progs/v<N>` per eBPF program version) are adopted
/// on start, or replaced by the agent's own version, which is worth knowing.
fn pins_note(pin_dir: &Path) -> String {
    let Ok(entries) = fs::read_dir(pin_dir.join("progs")) else {
        return String::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    if names.is_empty() {
        return String::new();
    }
    names.sort_unstable();
    format!(
        "; programs pinned by an earlier agent ({}), adopted or replaced on start",
        names.join(", ")
    )
}

fn unmounted_bpffs(pin_dir: &Path, kernel_has_bpffs: bool) -> Check {
    let pin_dir_hint = "or set the pin directory (--pin-dir, FERRULE_PIN_DIR or capture.pin_dir) \
                        to a directory where bpffs can be mounted";
    if !kernel_has_bpffs {
        return Check::fail(
            BPFFS,
            format!("the kernel has no bpf filesystem ({FILESYSTEMS} does not list it)"),
            "use a kernel built with CONFIG_BPF_SYSCALL=y",
        );
    }
    let mount_point = bpffs::mount_point_for(pin_dir);
    if mount_point == Path::new(BPFFS_ROOT) && !mount_point.is_dir() {
        return Check::fail(
            BPFFS,
            format!("{BPFFS_ROOT} does not exist, so bpffs cannot be mounted there"),
            format!("mount sysfs at /sys (it provides {BPFFS_ROOT}), {pin_dir_hint}"),
        );
    }
    Check::ok(
        BPFFS,
        format!(
            "no bpffs at {} yet: the agent mounts one there on start",
            mount_point.display()
        ),
    )
}

/// Whether `/proc/filesystems` text lists `fs_type` (lines like `nodev\tbpf`).
fn lists_filesystem(filesystems: &str, fs_type: &str) -> bool {
    filesystems
        .lines()
        .any(|line| line.split_whitespace().last() == Some(fs_type))
}

pub(super) fn cgroup2() -> Check {
    match fs::read_to_string(MOUNTINFO) {
        Ok(mountinfo) => cgroup2_check(&mountinfo),
        Err(e) => Check::fail(
            CGROUP2,
            format!("cannot read {MOUNTINFO}: {e}"),
            "mount procfs at /proc",
        ),
    }
}

fn cgroup2_check(mountinfo: &str) -> Check {
    let Some(mount) = cgroup::cgroup2_mount_in(mountinfo) else {
        return Check::fail(
            CGROUP2,
            "no cgroup2 filesystem is mounted; the capture programs attach to cgroup v2",
            "boot with systemd.unified_cgroup_hierarchy=1, or mount it: \
             mount -t cgroup2 none /sys/fs/cgroup/unified",
        );
    };
    let hybrid = cgroup::mounts(mountinfo).any(|(_, fs_type)| fs_type == "cgroup");
    let layout = if hybrid {
        " (hybrid layout: v1 controllers are mounted too)"
    } else {
        ""
    };
    Check::ok(
        CGROUP2,
        format!("cgroup2 mounted at {}{layout}", mount.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn proc_filesystems_lists_bpf() {
        let list = "nodev\tsysfs\nnodev\tcgroup2\n\text4\nnodev\tbpf\n";
        assert!(lists_filesystem(list, "bpf"));
        assert!(lists_filesystem(list, "ext4"));
        assert!(!lists_filesystem(list, "bpffs"));
    }

    #[test]
    fn missing_bpffs_is_fine_when_the_agent_can_mount_it() {
        let tmp = tempfile::tempdir().unwrap();
        let pin_dir = tmp.path().join("ferrule");
        let check = unmounted_bpffs(&pin_dir, true);
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(check.detail.contains("the agent mounts one"), "{check:?}");

        let check = unmounted_bpffs(&pin_dir, false);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(
            check
                .hint
                .as_deref()
                .unwrap()
                .contains("CONFIG_BPF_SYSCALL"),
            "{check:?}"
        );
    }

    #[test]
    fn cgroup2_reports_the_mount_and_a_hybrid_layout() {
        let hybrid = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let check = cgroup2_check(hybrid);
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(
            check.detail,
            "cgroup2 mounted at /sys/fs/cgroup/unified (hybrid layout: v1 controllers are mounted too)"
        );
        let check = cgroup2_check(hybrid.lines().next().unwrap());
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(
            check.hint.as_deref().unwrap().contains("mount -t cgroup2"),
            "{check:?}"
        );
    }
}
