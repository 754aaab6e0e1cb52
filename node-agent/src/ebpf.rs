//! The eBPF object built from `ebpf/` (embedded at build time), the BPF filesystem its pins
//! live in and the cgroup v2 hierarchy its programs attach to. Loading, pinning and attaching the
//! capture programs is `crate::capture`'s job.

mod bpffs;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::{io, path::PathBuf};

use aya::Ebpf;

pub use bpffs::{Bpffs, ensure_bpffs};
pub use ferrule_node_checks::bpffs::{BPFFS_ROOT, is_bpffs, mount_point_for, nearest_existing};
pub use ferrule_node_checks::cgroup::{cgroup2_mount, cgroup2_mount_in};

/// The eBPF object file (ELF) produced by `build.rs`; empty when built with `AYA_BUILD_SKIP=1`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ferrule-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the agent was built with AYA_BUILD_SKIP=1, so it carries no eBPF programs")]
    NotBuilt,
    #[error("loading the eBPF object (creating its maps)")]
    Load(#[from] aya::EbpfError),
    #[error("mounting bpffs at {path}")]
    Bpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The embedded eBPF object, for tools that want to inspect or load it themselves.
pub fn object() -> &'static [u8] {
    OBJECT
}

/// Parses the embedded object and creates its maps in the kernel; programs are loaded on attach.
/// Needs `CAP_BPF` (or root). Dropping the returned value detaches and unloads everything that
/// is not pinned.
pub fn load() -> Result<Ebpf, Error> {
    if OBJECT.is_empty() {
        return Err(Error::NotBuilt);
    }
    Ok(Ebpf::load(OBJECT)?)
}
