//! Where the capture's kernel objects are pinned in bpffs. Pins are what outlive the agent:
//!
//! ```text
//! <pin_dir>/maps/<MAP>                      every map (ferrule_ebpf_common::ALL_MAPS)
//! <pin_dir>/progs/v<N>/<program>            the programs of version N
//! <pin_dir>/progs/staging-v<N>/<program>    version N while it is being pinned
//! <pin_dir>/pods/<netns cookie>/<program>   one bpf_link per program and pod cgroup
//! <pin_dir>/pods/<netns cookie>/cgroup-<id> empty directory recording the pod's cgroup
//! ```
//!
//! A pinned link keeps its program attached until the pin is removed, whether or not an agent
//! runs; that is how capture keeps failing closed while the agent restarts.
//!
//! Maps are shared by every program version. Each version's programs are pinned into a staging
//! directory and then renamed to `v<N>`, so `v<N>` is either complete or absent, even after a
//! crash. Agents from before program versions pinned their programs directly as
//! `progs/<program>`; those count as [`PinnedVersion::Unversioned`].

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use ferrule_ebpf_common::{ALL_MAPS, RETIRED_MAPS};

use super::{Error, programs::PROGRAMS};
use crate::ebpf::{self, Bpffs};

const CGROUP_MARKER: &str = "cgroup-";
const VERSION_PREFIX: &str = "v";
// bpffs refuses names with a dot.
const STAGING_PREFIX: &str = "staging-v";

/// Which programs a program pin holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PinnedVersion {
    /// Pinned as `progs/<program>` by an agent from before program versions.
    Unversioned,
    Version(u32),
}

/// `v<N>` to N.
fn parse_version(name: &str) -> Option<u32> {
    name.strip_prefix(VERSION_PREFIX)?.parse().ok()
}

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

    fn programs(&self) -> PathBuf {
        self.root.join("progs")
    }

    /// The pin of program `name` of `version`.
    pub(super) fn program(&self, version: u32, name: &str) -> PathBuf {
        self.version_dir(version).join(name)
    }

    fn version_dir(&self, version: u32) -> PathBuf {
        self.programs().join(format!("{VERSION_PREFIX}{version}"))
    }

    /// Where version `version` is pinned before it is renamed into place.
    fn staging_dir(&self, version: u32) -> PathBuf {
        self.programs().join(format!("{STAGING_PREFIX}{version}"))
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
        for dir in [self.root.join("maps"), self.programs(), self.pods()] {
            create_dir(&dir)?;
        }
        Ok(mounted)
    }

    /// Whether every program of `version` and every map is pinned, i.e. a previous agent left a
    /// complete set to adopt.
    pub(super) fn has_all_pins(&self, version: u32) -> bool {
        PROGRAMS
            .iter()
            .all(|name| self.program(version, name).exists())
            && ALL_MAPS.iter().all(|name| self.map(name).exists())
    }

    /// An empty staging directory for `version` (emptied if a crash mid-load left pins in it).
    pub(super) fn prepare_staging(&self, version: u32) -> Result<PathBuf, Error> {
        let staging = self.staging_dir(version);
        remove_tree(&staging)?;
        create_dir(&staging)?;
        Ok(staging)
    }

    /// Replaces (an incomplete) `v<version>` with the staging directory, which holds every
    /// program pin of `version`.
    pub(super) fn commit_staging(&self, version: u32) -> Result<(), Error> {
        let target = self.version_dir(version);
        remove_tree(&target)?;
        let staging = self.staging_dir(version);
        fs::rename(&staging, &target).map_err(|source| Error::PinDir {
            path: staging,
            source,
        })
    }

    /// Every program pin of every version (not staging ones: nothing runs those).
    pub(super) fn program_pins(&self) -> Vec<(PinnedVersion, PathBuf)> {
        let Ok(entries) = fs::read_dir(self.programs()) else {
            return Vec::new();
        };
        let mut pins = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if PROGRAMS.contains(&name) {
                pins.push((PinnedVersion::Unversioned, entry.path()));
            } else if let Some(version) = parse_version(name) {
                let programs = PROGRAMS.iter().map(|program| entry.path().join(program));
                pins.extend(programs.map(|path| (PinnedVersion::Version(version), path)));
            }
        }
        pins
    }

    /// Removes every program pin except those of `keep` (other versions, unversioned ones,
    /// leftover staging directories). Programs still attached stay loaded: a link holds its own.
    pub(super) fn remove_programs_except(&self, keep: Option<u32>) -> Result<(), Error> {
        let programs = self.programs();
        let entries = match fs::read_dir(&programs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(Error::PinDir {
                    path: programs,
                    source,
                });
            }
        };
        let keep = keep.map(|version| self.version_dir(version));
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if Some(&path) != keep.as_ref() {
                remove_tree(&path)?;
            }
        }
        Ok(())
    }

    /// Removes the pins of maps only earlier program versions used (the kernel frees each map
    /// when the last program or handle using it is gone).
    pub(super) fn remove_retired_maps(&self) -> Result<(), Error> {
        for name in RETIRED_MAPS {
            remove_file(&self.map(name))?;
        }
        Ok(())
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

    /// Removes every program pin of every version, every map pin and the directory tree (after
    /// all pods were released).
    pub(super) fn remove_all(&self) -> Result<(), Error> {
        self.remove_programs_except(None)?;
        for name in ALL_MAPS {
            remove_file(&self.map(name))?;
        }
        self.remove_retired_maps()?;
        for dir in [self.pods(), self.programs(), self.root.join("maps")] {
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

/// Removes a pin or a directory of pins.
fn remove_tree(path: &Path) -> Result<(), Error> {
    if path.is_dir() {
        ignore_missing(fs::remove_dir_all(path), path)
    } else {
        remove_file(path)
    }
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
