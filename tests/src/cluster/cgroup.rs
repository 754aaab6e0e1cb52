//! The cluster's cgroup v2 tree: `<cgroup2 mount>/<cluster>/<node>/<pod>` for pods and
//! `<cluster>/system/<node>` for node processes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::Error;

/// How long killed processes get to leave their cgroups before removal is attempted anyway.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// A just-reaped process can keep a cgroup busy (EBUSY) for a moment.
const RMDIR_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on pure v2 hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones.
pub fn cgroup2_root() -> Result<PathBuf, Error> {
    ferrule_node_agent::ebpf::cgroup2_mount()
        .map_err(Error::io("reading /proc/self/mountinfo"))?
        .ok_or(Error::NoCgroup2)
}

pub(super) fn create(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(Error::io(format!("creating cgroup {}", path.display())))
}

/// Kills every process in the tree under `path` (one write to `cgroup.kill`, which covers all
/// descendants and cannot miss a process forked meanwhile) and waits until the tree is empty.
pub(super) fn kill_tree(path: &Path) -> Result<(), Error> {
    let kill = path.join("cgroup.kill");
    match fs::write(&kill, "1") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        result => result.map_err(Error::io(format!("writing {}", kill.display())))?,
    }
    let start = Instant::now();
    while is_populated(path) && start.elapsed() < KILL_TIMEOUT {
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn is_populated(path: &Path) -> bool {
    fs::read_to_string(path.join("cgroup.events"))
        .map(|events| events.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Removes the cgroup at `path` and all below it, deepest first (rmdir only takes empty
/// cgroups). A tree that is already gone is fine.
pub(super) fn remove_tree(path: &Path) -> Result<(), Error> {
    let entries = match fs::read_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        entries => entries.map_err(Error::io(format!("listing {}", path.display())))?,
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    remove_dir(path)
}

fn remove_dir(path: &Path) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.kind() == io::ErrorKind::ResourceBusy && start.elapsed() < RMDIR_TIMEOUT =>
            {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::io(format!("removing cgroup {}", path.display()))(e)),
        }
    }
}
