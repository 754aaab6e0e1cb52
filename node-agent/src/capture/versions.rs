//! Program versions on running pod links: switching every link to the agent's own version in
//! place, and telling which version each link runs.
//!
//! A switch is one `BPF_LINK_UPDATE` per link: the link, its pin and its cgroup attachment stay,
//! and the kernel swaps the program inside the cgroup's run array, so every connect and packet
//! runs either the old or the new program and none runs neither. Old and new programs share the
//! maps, so a connect recorded by an old connect4 is still found by a new sock_ops.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::programs::{ProgramFd, ProgramInfo};
use tracing::{info, warn};

use super::{
    Error,
    layout::{Layout, PinnedVersion},
    programs::{PROGRAMS, Programs},
    sys::bpf::{self, LinkInfo},
};

/// [`super::Capture::links_by_version`] key of links whose program is not pinned as any
/// version (e.g. its pins were removed by hand, or an older agent still runs and attached it).
const UNKNOWN: &str = "unknown";
/// Key of links running the programs of an agent from before program versions.
const UNVERSIONED: &str = "0";
/// Tries per link when another agent switches it at the same time.
const ATTEMPTS: usize = 3;

/// Switches every pod link that does not run `programs` to them, then removes the program pins
/// of every other version, unless some link could not be switched (it still runs one of them).
pub(super) fn switch_links(layout: &Layout, programs: &Programs) -> Result<(), Error> {
    let mut targets = HashMap::new();
    for name in PROGRAMS {
        targets.insert(name, (programs.fd(name)?, programs.id(name)?));
    }
    let known = KnownPrograms::scan(layout);
    let (mut switched, mut failed) = (BTreeMap::<String, usize>::new(), 0);
    for (name, path) in link_pins(layout) {
        let (new, new_id) = targets[name];
        match switch_link(&path, new, new_id) {
            Ok(Some(old)) => *switched.entry(known.label(old)).or_default() += 1,
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {} // unenrolled meanwhile
            Err(error) => {
                warn!(link = %path.display(), %error, "could not switch the link's program");
                failed += 1;
            }
        }
    }
    let version = programs.version();
    if !switched.is_empty() {
        info!(version, from = ?switched, "switched pod links to this agent's program version");
    }
    if failed > 0 {
        warn!(
            failed,
            "some pod links still run other program versions; keeping their pins"
        );
        return Ok(());
    }
    layout.remove_programs_except(Some(version))?;
    layout.remove_retired_maps()
}

/// How many pod links run each program version. Links of pods whose cgroup is gone run nothing
/// and are not counted.
pub(super) fn links_by_version(layout: &Layout) -> BTreeMap<String, usize> {
    let known = KnownPrograms::scan(layout);
    let mut counts = BTreeMap::new();
    for (_, path) in link_pins(layout) {
        let label = match read_link(&path) {
            Ok(info) if info.cgroup_id == 0 => continue,
            Ok(info) => known.label(info.program_id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // unenrolled meanwhile
            Err(_) => UNKNOWN.to_owned(),
        };
        *counts.entry(label).or_default() += 1;
    }
    counts
}

/// Makes the link pinned at `path` run `new` (whose id is `new_id`). Returns the id of the
/// program it ran if it was switched; `None` if it already ran `new` or is defunct.
fn switch_link(path: &Path, new: &ProgramFd, new_id: u32) -> io::Result<Option<u32>> {
    let link = bpf::open_pinned(path)?;
    for _ in 0..ATTEMPTS {
        let info = bpf::link_info(link.as_fd())?;
        // A defunct link (its cgroup is gone) runs nothing and cannot be updated.
        if info.program_id == new_id || info.cgroup_id == 0 {
            return Ok(None);
        }
        // Compare and swap: only if the link still runs what we just read.
        let old = bpf::program_by_id(info.program_id)?;
        match bpf::update_link(link.as_fd(), new.as_fd(), old.as_fd()) {
            Ok(()) => return Ok(Some(info.program_id)),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {} // switched by someone else
            Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "the link's program kept changing under us (another agent switching it?)",
    ))
}

fn read_link(path: &Path) -> io::Result<LinkInfo> {
    bpf::link_info(bpf::open_pinned(path)?.as_fd())
}

/// Every link pin of every enrolled pod, with its program's name.
fn link_pins(layout: &Layout) -> Vec<(&'static str, PathBuf)> {
    layout
        .enrolled()
        .into_iter()
        .flat_map(|pod| PROGRAMS.map(|name| (name, layout.link(pod, name))))
        .filter(|(_, path)| path.exists())
        .collect()
}

/// The version of each pinned program, by program id.
struct KnownPrograms(HashMap<u32, PinnedVersion>);

impl KnownPrograms {
    /// Reads the id of every program pin. A pin that cannot be read leaves its links unknown.
    fn scan(layout: &Layout) -> Self {
        let ids = layout
            .program_pins()
            .into_iter()
            .filter_map(|(version, path)| Some((ProgramInfo::from_pin(path).ok()?.id(), version)))
            .collect();
        Self(ids)
    }

    fn label(&self, program_id: u32) -> String {
        match self.0.get(&program_id) {
            Some(PinnedVersion::Version(version)) => version.to_string(),
            Some(PinnedVersion::Unversioned) => UNVERSIONED.to_owned(),
            None => UNKNOWN.to_owned(),
        }
    }
}
