//! Test fixtures for privileged eBPF tests: a throw-away cgroup v2 directory, a child process
//! killed on drop, and a private bpffs mount. Each cleans up in `Drop`, so a failing assertion
//! leaves nothing behind.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Child,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

use rustix::mount::{UnmountFlags, unmount};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call, e.g. `ferrule-test-cg-1234-0`.
pub(crate) fn unique_name(kind: &str) -> String {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("ferrule-test-{kind}-{}-{id}", std::process::id())
}

/// Fails the test with a clear message unless it runs as root (loading eBPF, creating cgroups
/// and mounting need it). Run the suite with `cargo xtask test`.
pub(crate) fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test loads eBPF programs and creates cgroups: run it as root (`cargo xtask test`)"
    );
}

fn cgroup2_root() -> PathBuf {
    super::cgroup2_mount()
        .expect("read /proc/self/mountinfo")
        .expect("no cgroup2 filesystem mounted (see /proc/self/mountinfo)")
}

/// A fresh cgroup v2 directory, removed on drop.
pub(crate) struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    pub(crate) fn create() -> Self {
        let path = cgroup2_root().join(unique_name("cg"));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn add_process(&self, pid: u32) {
        let procs = self.path.join("cgroup.procs");
        fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("move pid {pid} into {}: {e}", procs.display()));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // A just-reaped process can keep the cgroup busy (EBUSY) for a moment.
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "warning: could not remove test cgroup {}",
            self.path.display()
        );
    }
}

/// A child process that is killed and reaped on drop, so it never outlives a failed test.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already exited in the normal case; these errors are then expected and harmless.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private bpffs mounted on a fresh directory under the temp dir; unmounted and removed on drop.
pub(crate) struct TempMountDir {
    path: PathBuf,
}

impl TempMountDir {
    pub(crate) fn new() -> Self {
        Self {
            path: std::env::temp_dir().join(unique_name("bpffs")),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempMountDir {
    fn drop(&mut self) {
        // Not mounted if the test failed before mounting; then only the directory is removed.
        let _ = unmount(&self.path, UnmountFlags::DETACH);
        let _ = fs::remove_dir(&self.path);
    }
}
