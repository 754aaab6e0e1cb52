//! Pods that already run when the agent starts: their processes are found in the host's /proc
//! by the pod UID in their cgroup path, and one of them gives the pod's network namespace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::cgroup::pod_uid_in;

/// Pod UID → the network namespace of its lowest-numbered process (the sandbox's pause process
/// starts first, and every container of the pod shares its netns).
pub fn running_pods(proc_root: &Path) -> HashMap<String, PathBuf> {
    let mut oldest: HashMap<String, u32> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        tracing::warn!(proc = %proc_root.display(), "cannot read the host's /proc: running pods are not found");
        return HashMap::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes exit while we look; whatever cannot be read is skipped.
        let Ok(text) = std::fs::read_to_string(entry.path().join("cgroup")) else {
            continue;
        };
        if let Some(uid) = pod_uid_in(&text) {
            let slot = oldest.entry(uid).or_insert(pid);
            *slot = (*slot).min(pid);
        }
    }
    oldest
        .into_iter()
        .map(|(uid, pid)| (uid, proc_root.join(pid.to_string()).join("ns/net")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_pod_to_its_lowest_pid() {
        let proc = tempfile::tempdir().unwrap();
        let uid = "0b5f8a3e-7d1c-4e2a-9f00-1234567890ab";
        for (pid, cgroup) in [
            ("40", format!("0::/kubepods/besteffort/pod{uid}/c2\n")),
            ("7", format!("0::/kubepods/besteffort/pod{uid}/pause\n")),
            ("3", "0::/system.slice/kubelet.service\n".to_owned()),
        ] {
            let dir = proc.path().join(pid);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        }
        std::fs::create_dir_all(proc.path().join("self")).unwrap();
        let pods = running_pods(proc.path());
        assert_eq!(pods.len(), 1, "{pods:?}");
        assert_eq!(pods[uid], proc.path().join("7/ns/net"));
    }
}
