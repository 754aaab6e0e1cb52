//! What may be enrolled: a pod's own network namespace and cgroup, never the node's. Capture
//! on the node's network namespace or the root cgroup would take over the node itself: every
//! process's connections redirected, and in strict mode its inbound packets dropped.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::{EnrollError, PodSpec};

/// Network namespaces that belong to the node, and how the refusal names them.
const NODE_NETNS: [(&str, &str); 2] = [
    (
        "/proc/self/ns/net",
        "the agent's own (the node's) network namespace",
    ),
    ("/proc/1/ns/net", "the host's network namespace (PID 1's)"),
];

/// `cgroup.type` exists in every cgroup v2 directory but the root (kernel cgroup-v2.rst).
const NON_ROOT_MARKER: &str = "cgroup.type";

impl PodSpec {
    /// Refuses a spec whose netns or cgroup is the node's rather than a pod's (403).
    pub fn check_target(&self) -> Result<(), EnrollError> {
        if let Some((_, what)) = NODE_NETNS
            .iter()
            .find(|(node, _)| same_file(&self.netns, Path::new(node)))
        {
            return Err(EnrollError::Forbidden(format!(
                "netns {} is {what}; only a pod's own network namespace can be enrolled",
                self.netns.display()
            )));
        }
        if is_root_cgroup(&self.cgroup) {
            return Err(EnrollError::Forbidden(format!(
                "cgroup {} is the root of the cgroup v2 hierarchy; only a pod's own cgroup can \
                 be enrolled",
                self.cgroup.display()
            )));
        }
        Ok(())
    }
}

/// Whether both paths name the same file (a namespace file: the same namespace).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

fn is_root_cgroup(dir: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let cgroup2 = rustix::fs::statfs(dir).is_ok_and(|fs| fs.f_type as i64 == CGROUP2_SUPER_MAGIC);
    cgroup2 && !dir.join(NON_ROOT_MARKER).exists()
}
