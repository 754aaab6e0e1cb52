//! Test fixtures for privileged eBPF tests: a throw-away cgroup v2 directory, a child process
//! placed in it, and a private bpffs mount. Each cleans up in `Drop`, so a failing assertion
//! leaves nothing behind.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

use rustix::mount::{UnmountFlags, unmount};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call, e.g. `ferrule-test-cg-1234-0`.
fn unique_name(kind: &str) -> String {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("ferrule-test-{kind}-{}-{id}", std::process::id())
}

/// Fails the test with a clear message unless it runs as root (loading eBPF, creating cgroups
/// and mounting need it). Run the suite with `cargo xtask test`.
pub(super) fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test loads eBPF programs and creates cgroups: run it as root (`cargo xtask test`)"
    );
}

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on pure v2 hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones.
fn cgroup2_root() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    mountinfo
        .lines()
        .find_map(|line| {
            // "<id> <parent> <dev> <root> <mount point> <opts>... - <fstype> <source> <opts>"
            let (mount, fs) = line.split_once(" - ")?;
            let mount_point = mount.split(' ').nth(4)?;
            (fs.split(' ').next()? == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .expect("no cgroup2 filesystem mounted (see /proc/self/mountinfo)")
}

/// A fresh cgroup v2 directory, removed on drop.
pub(super) struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    pub(super) fn create() -> Self {
        let path = cgroup2_root().join(unique_name("cg"));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        Self { path }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn add_process(&self, pid: u32) {
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
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already exited in the normal case; these errors are then expected and harmless.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `python3 -c script args..` inside `cgroup` and returns its stdout. The script must read
/// one line from stdin before doing anything observable: that line is only sent once the child
/// has been moved into the cgroup (no fork hooks or unsafe `pre_exec` needed).
pub(super) fn run_python_in(cgroup: &TestCgroup, script: &str, args: &[&str]) -> String {
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3 (installed by `cargo xtask setup`)");
    let mut child = KillOnDrop(child);
    cgroup.add_process(child.0.id());
    let mut stdin = child.0.stdin.take().expect("child stdin");
    writeln!(stdin, "go").expect("release the child");
    drop(stdin);
    let mut stdout = String::new();
    let mut reader = BufReader::new(child.0.stdout.take().expect("child stdout"));
    while reader.read_line(&mut stdout).expect("read child stdout") > 0 {}
    let status = child.0.wait().expect("wait for the child");
    assert!(
        status.success(),
        "python3 child failed ({status}); it printed: {stdout:?}"
    );
    stdout
}

/// A private bpffs mounted on a fresh directory under the temp dir; unmounted and removed on drop.
pub(super) struct TempMountDir {
    path: PathBuf,
}

impl TempMountDir {
    pub(super) fn new() -> Self {
        Self {
            path: std::env::temp_dir().join(unique_name("bpffs")),
        }
    }

    pub(super) fn path(&self) -> &Path {
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
