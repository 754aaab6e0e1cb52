//! Where the capture's kernel objects are pinned in bpffs. Pins are what outlive the agent:
//!
//! ```text
//! <pin_dir>/maps/<MAP>                      every map (ferrule_ebpf_common::ALL_MAPS)
//! <pin_dir>/progs/<program>                 the loaded programs, attached to new pods
//! <pin_dir>/pods/<netns cookie>/<program>   one bpf_link per program and pod cgroup
//! <pin_dir>/pods/<netns cookie>/cgroup-<id> empty directory recording the pod's cgroup
//! ```
//!
//! A pinned link keeps its program attached until the pin is removed, whether or not an agent
//! runs; that is how capture keeps failing closed while the agent restarts.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use ferrule_ebpf_common::ALL_MAPS;

use super::{Error, programs::PROGRAMS};
use crate::ebpf::{self, Bpffs};

const CGROUP_MARKER: &str = "cgroup-";

#[derive(Debug, Clone)]
pub(super) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(super) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    pub(super) fn program(&self, name: &str) -> PathBuf {
        self.root.join("progs").join(name)
    }

    fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }

    pub(super) fn pod(&self, netns_cookie: u64) -> PathBuf {
        self.pods().join(netns_cookie.to_string())
    }

    pub(super) fn link(&self, netns_cookie: u64, program: &str) -> PathBuf {
        self.pod(netns_cookie).join(program)
    }

    /// Makes sure the pin directory is on a bpffs (mounting one if needed) and creates the
    /// directory tree. Returns whether a bpffs was mounted now.
    pub(super) fn prepare(&self) -> Result<Bpffs, Error> {
        let mounted = ensure_on_bpffs(&self.root)?;
        for dir in [self.root.join("maps"), self.root.join("progs"), self.pods()] {
            create_dir(&dir)?;
        }
        Ok(mounted)
    }

    /// Whether every program and map is pinned, i.e. a previous agent left a complete set to
    /// adopt.
    pub(super) fn has_all_pins(&self) -> bool {
        PROGRAMS.iter().all(|name| self.program(name).exists())
            && ALL_MAPS.iter().all(|name| self.map(name).exists())
    }

    /// Network-namespace cookies of the pods with a pin directory.
    pub(super) fn enrolled(&self) -> Vec<u64> {
        let Ok(entries) = fs::read_dir(self.pods()) else {
            return Vec::new();
        };
        let mut cookies: Vec<u64> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        cookies.sort_unstable();
        cookies
    }

    /// Creates the pod's directory and records its cgroup id, or checks it against the one
    /// recorded by an earlier enrollment.
    pub(super) fn claim_pod(&self, netns_cookie: u64, cgroup_id: u64) -> Result<(), Error> {
        if let Some(recorded) = self.recorded_cgroup(netns_cookie)
            && recorded != cgroup_id
        {
            return Err(Error::CgroupMismatch {
                netns_cookie,
                enrolled: recorded,
                given: cgroup_id,
            });
        }
        create_dir(
            &self
                .pod(netns_cookie)
                .join(format!("{CGROUP_MARKER}{cgroup_id}")),
        )
    }

    /// The cgroup id recorded when the pod was enrolled, if any.
    pub(super) fn recorded_cgroup(&self, netns_cookie: u64) -> Option<u64> {
        fs::read_dir(self.pod(netns_cookie))
            .ok()?
            .filter_map(Result::ok)
            .find_map(|entry| {
                let name = entry.file_name();
                name.to_str()?.strip_prefix(CGROUP_MARKER)?.parse().ok()
            })
    }

    /// Removes the pod's (by now empty of links) directory.
    pub(super) fn release_pod(&self, netns_cookie: u64) -> Result<(), Error> {
        let pod = self.pod(netns_cookie);
        if let Some(cgroup_id) = self.recorded_cgroup(netns_cookie) {
            remove_dir(&pod.join(format!("{CGROUP_MARKER}{cgroup_id}")))?;
        }
        remove_dir(&pod)
    }

    /// Removes every program and map pin and the directory tree (after all pods were released).
    pub(super) fn remove_all(&self) -> Result<(), Error> {
        for name in PROGRAMS {
            remove_file(&self.program(name))?;
        }
        for name in ALL_MAPS {
            remove_file(&self.map(name))?;
        }
        for dir in [self.pods(), self.root.join("progs"), self.root.join("maps")] {
            remove_dir(&dir)?;
        }
        // The root may be a bpffs mount point or hold other things: leave it if so.
        let _ = fs::remove_dir(&self.root);
        Ok(())
    }
}

/// bpffs may already be mounted above `dir` (the usual `/sys/fs/bpf`); otherwise mount one at
/// the conventional root when `dir` is below it, or at `dir` itself.
fn ensure_on_bpffs(dir: &Path) -> Result<Bpffs, Error> {
    let existing = ebpf::nearest_existing(dir);
    let on_bpffs = ebpf::is_bpffs(existing).map_err(|source| Error::PinDir {
        path: existing.to_owned(),
        source,
    })?;
    if on_bpffs {
        return Ok(Bpffs::AlreadyMounted);
    }
    ebpf::ensure_bpffs(ebpf::mount_point_for(dir)).map_err(Error::Bpffs)
}

fn create_dir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|source| Error::PinDir {
        path: path.to_owned(),
        source,
    })
}

fn remove_dir(path: &Path) -> Result<(), Error> {
    ignore_missing(fs::remove_dir(path), path)
}

pub(super) fn remove_file(path: &Path) -> Result<(), Error> {
    ignore_missing(fs::remove_file(path), path)
}

fn ignore_missing(result: io::Result<()>, path: &Path) -> Result<(), Error> {
    match result {
        Err(source) if source.kind() != io::ErrorKind::NotFound => Err(Error::PinDir {
            path: path.to_owned(),
            source,
        }),
        _ => Ok(()),
    }
}
