//! Where the cgroup v2 hierarchy the capture programs attach to is mounted, read from
//! `/proc/self/mountinfo`. The agent attaches there; the cgroup2 check looks for it.

use std::{fs, io, path::PathBuf};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on pure v2 hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones; `None` when no cgroup2 filesystem is mounted.
pub fn cgroup2_mount() -> io::Result<Option<PathBuf>> {
    Ok(cgroup2_mount_in(&fs::read_to_string(MOUNTINFO)?))
}

/// The first cgroup2 mount point listed in `mountinfo` (the text of `/proc/<pid>/mountinfo`).
pub fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mounts(mountinfo)
        .find_map(|(mount_point, fs_type)| (fs_type == "cgroup2").then_some(mount_point))
}

/// Each mount's (mount point, filesystem type), in mountinfo order.
pub(crate) fn mounts(mountinfo: &str) -> impl Iterator<Item = (PathBuf, &str)> {
    mountinfo.lines().filter_map(|line| {
        // "<id> <parent> <dev> <root> <mount point> <opts> [optional fields...] - <fstype> <source> <opts>"
        let (mount, fs) = line.split_once(" - ")?;
        let mount_point = mount.split(' ').nth(4)?;
        let fs_type = fs.split(' ').next()?;
        Some((PathBuf::from(unescape(mount_point)), fs_type))
    })
}

/// The kernel writes space, tab, newline and backslash in paths as 3-digit octal escapes
/// (`\040`); anything else passes through.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_cgroup2_mount_among_v1_ones() {
        assert_eq!(
            cgroup2_mount_in(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount_in(pure),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn no_cgroup2_mount_is_none() {
        let v1_only = HYBRID.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(cgroup2_mount_in(&v1_only), None);
        assert_eq!(cgroup2_mount_in("garbage line\n"), None);
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let line = r"50 23 0:40 / /mnt/my\040cgroups\134x rw - cgroup2 cgroup2 rw";
        assert_eq!(
            cgroup2_mount_in(line),
            Some(PathBuf::from(r"/mnt/my cgroups\x"))
        );
        assert_eq!(unescape(r"a\0b\"), r"a\0b\");
    }
}
