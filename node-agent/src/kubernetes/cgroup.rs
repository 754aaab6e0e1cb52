//! Where kubelet put a pod's cgroup, found from its UID. Both cgroup drivers are handled:
//!
//! - systemd: `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice`
//!   (guaranteed pods sit directly under `kubepods.slice` as `kubepods-pod<uid>.slice`)
//! - cgroupfs: `kubepods/burstable/pod<uid>` (guaranteed: `kubepods/pod<uid>`)

use std::path::{Path, PathBuf};

/// kubelet nests pod cgroups at most this deep below the cgroup root (kubepods/qos/pod); one
/// more level leaves room for a `--cgroup-root` parent.
const MAX_DEPTH: usize = 4;

/// The pod-level cgroup directory of the pod with `uid` below `root`, if kubelet created it.
pub fn find_pod_cgroup(root: &Path, uid: &str) -> Option<PathBuf> {
    let wanted = [format!("pod{uid}"), format!("pod{}", uid.replace('-', "_"))];
    search(root, &wanted, 0, false)
}

/// `in_kubepods`: below a `kubepods*` directory, where every directory may lead to a pod
/// (cgroupfs names the QoS levels plainly: `besteffort`, `burstable`).
fn search(dir: &Path, wanted: &[String; 2], depth: usize, in_kubepods: bool) -> Option<PathBuf> {
    if depth > MAX_DEPTH {
        return None;
    }
    let entries = std::fs::read_dir(dir).ok()?;
    let mut children = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_pod_dir(&name, wanted) {
            return Some(entry.path());
        }
        // Only kubelet's tree (and a possible parent slice holding it) is worth descending into.
        let kubepods = in_kubepods || name.starts_with("kubepods");
        if depth == 0 || kubepods {
            children.push((entry.path(), kubepods));
        }
    }
    children
        .iter()
        .find_map(|(child, kubepods)| search(child, wanted, depth + 1, *kubepods))
}

fn is_pod_dir(name: &str, wanted: &[String; 2]) -> bool {
    let stem = name.strip_suffix(".slice").unwrap_or(name);
    wanted
        .iter()
        .any(|w| stem == w || stem.ends_with(&format!("-{w}")))
}

/// The pod UID in a `/proc/<pid>/cgroup` text, in its canonical dashed form.
pub fn pod_uid_in(cgroup_text: &str) -> Option<String> {
    cgroup_text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        path.split('/').find_map(uid_of_component)
    })
}

/// `pod<uid>` or `kubepods-<qos>-pod<uid_with_underscores>.slice` → the dashed UID.
fn uid_of_component(component: &str) -> Option<String> {
    let stem = component.strip_suffix(".slice").unwrap_or(component);
    let start = stem.rfind("pod")? + 3;
    let uid = stem[start..].replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// 8-4-4-4-12 hexadecimal, as Kubernetes generates pod UIDs.
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b5f8a3e-7d1c-4e2a-9f00-1234567890ab";

    #[test]
    fn finds_pods_under_both_cgroup_drivers() {
        let root = tempfile::tempdir().unwrap();
        let systemd = root.path().join(format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            UID.replace('-', "_")
        ));
        std::fs::create_dir_all(systemd.join("cri-containerd-abc.scope")).unwrap();
        assert_eq!(find_pod_cgroup(root.path(), UID), Some(systemd));

        let other = "11111111-2222-3333-4444-555555555555";
        let cgroupfs = root.path().join(format!("kubepods/besteffort/pod{other}"));
        std::fs::create_dir_all(cgroupfs.join("0123abcd")).unwrap();
        assert_eq!(find_pod_cgroup(root.path(), other), Some(cgroupfs));

        let guaranteed = "99999999-2222-3333-4444-555555555555";
        let direct = root.path().join(format!("kubepods/pod{guaranteed}"));
        std::fs::create_dir_all(&direct).unwrap();
        assert_eq!(find_pod_cgroup(root.path(), guaranteed), Some(direct));

        assert_eq!(
            find_pod_cgroup(root.path(), "00000000-0000-0000-0000-000000000000"),
            None
        );
    }

    #[test]
    fn reads_the_pod_uid_from_proc_cgroup() {
        let systemd = format!(
            "12:cpu:/\n0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-1.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid_in(&systemd).as_deref(), Some(UID));
        let cgroupfs = format!("0::/kubepods/burstable/pod{UID}/4f3e\n");
        assert_eq!(pod_uid_in(&cgroupfs).as_deref(), Some(UID));
        assert_eq!(pod_uid_in("0::/system.slice/sshd.service\n"), None);
        assert_eq!(pod_uid_in("0::/user.slice/podman-pod1.scope\n"), None);
    }
}
