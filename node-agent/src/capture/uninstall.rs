//! Taking capture off the node for good (`ferrule-agent uninstall`): every pod link is unpinned,
//! which detaches its program, then every other pin and directory below the pin directory goes.
//! It works from the pin tree alone: nothing is loaded, and no pin name is assumed beyond
//! `pods/<pod>/` holding the links, so it removes what any agent version pinned.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::programs::{links::PinnedLink, loaded_links};

use super::Error;
use crate::ebpf;

/// How long a detached link may take to disappear: the kernel frees links released by an
/// unpin from a work queue.
const LINK_RELEASE_WAIT: Duration = Duration::from_secs(2);
/// What the kernel (bpf_preload) puts at the root of every bpffs mount: not ours, not removable.
pub(super) const KERNEL_ENTRIES: [&str; 2] = ["maps.debug", "progs.debug"];

/// What [`uninstall`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UninstallReport {
    pub found: PinDir,
    /// Pod links unpinned (their programs detached from the pod cgroups).
    pub links_detached: usize,
    /// Kernel ids of unpinned links that still exist: a process holds them open, so their
    /// programs stay attached until it closes them.
    pub links_held_elsewhere: Vec<u32>,
    /// Other pins removed: programs, maps, whatever else was pinned below the directory.
    pub pins_removed: usize,
    /// The pin directory itself is gone (it stays when it is a mount point).
    pub pin_dir_removed: bool,
}

/// What the pin directory was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PinDir {
    #[default]
    Missing,
    /// Not on bpffs, so nothing can be pinned there; left untouched.
    NotBpffs,
    Present,
}

impl UninstallReport {
    /// Whether anything was removed.
    pub fn changed(&self) -> bool {
        self.links_detached > 0 || self.pins_removed > 0 || self.pin_dir_removed
    }
}

/// Detaches every pod link pinned below `pin_dir` and removes every pin and directory there.
/// Safe to run again, and on a directory that never existed.
pub fn uninstall(pin_dir: &Path) -> Result<UninstallReport, Error> {
    let mut report = UninstallReport::default();
    match fs::symlink_metadata(pin_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(source) => return Err(pin_error(pin_dir, source)),
        Ok(_) => {}
    }
    // Removing a tree recursively is only safe where nothing but pins can live.
    if !ebpf::is_bpffs(pin_dir).map_err(|source| pin_error(pin_dir, source))? {
        report.found = PinDir::NotBpffs;
        return Ok(report);
    }
    report.found = PinDir::Present;
    let unpinned = detach_pod_links(&pin_dir.join("pods"))?;
    report.links_detached = unpinned.len();
    report.links_held_elsewhere = still_loaded(&unpinned);
    report.pins_removed = remove_below(pin_dir, &KERNEL_ENTRIES)?;
    // A bpffs mounted at the pin directory itself cannot be removed (EBUSY); it is empty now
    // but for the kernel's own entries.
    report.pin_dir_removed = fs::remove_dir(pin_dir).is_ok();
    Ok(report)
}

/// Unpins every link below `pods/<pod>/`; returns their kernel ids (0 when the pin would not
/// say). Our descriptor is the last reference to an unpinned link unless someone else holds it.
fn detach_pod_links(pods: &Path) -> Result<Vec<u32>, Error> {
    let mut ids = Vec::new();
    for pod in entries(pods)? {
        for path in entries(&pod)? {
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                ids.push(unpin_link(&path)?);
            }
        }
    }
    Ok(ids)
}

fn unpin_link(path: &Path) -> Result<u32, Error> {
    // A pin that is not a link (or no longer opens) is still removed; it then just has no id.
    let Ok(link) = PinnedLink::from_pin(path) else {
        super::layout::remove_file(path)?;
        return Ok(0);
    };
    let link = link.unpin().map_err(|source| pin_error(path, source))?;
    Ok(link.info().map(|info| info.id()).unwrap_or(0))
}

/// The ids among `unpinned` the kernel still knows after a short wait.
fn still_loaded(unpinned: &[u32]) -> Vec<u32> {
    let wanted: BTreeSet<u32> = unpinned.iter().copied().filter(|id| *id != 0).collect();
    let deadline = Instant::now() + LINK_RELEASE_WAIT;
    loop {
        let alive: Vec<u32> = loaded_links()
            .filter_map(Result::ok)
            .map(|info| info.id())
            .filter(|id| wanted.contains(id))
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes everything below `dir` but the entries named in `keep` (depth first); returns how
/// many files (pins) it removed.
fn remove_below(dir: &Path, keep: &[&str]) -> Result<usize, Error> {
    let mut removed = 0;
    for path in entries(dir)? {
        if path
            .file_name()
            .is_some_and(|name| keep.iter().any(|k| name == *k))
        {
            continue;
        }
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            removed += remove_below(&path, &[])?;
            fs::remove_dir(&path).map_err(|source| pin_error(&path, source))?;
        } else {
            super::layout::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The entries of `dir`, sorted; none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(pin_error(dir, source)),
    };
    let mut paths = read
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| pin_error(dir, source))?;
    paths.sort();
    Ok(paths)
}

fn pin_error(path: &Path, source: io::Error) -> Error {
    Error::PinDir {
        path: path.to_owned(),
        source,
    }
}
