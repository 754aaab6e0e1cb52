//! eBPF capture: the programs built from `ebpf/` (embedded at build time), loading them into the
//! kernel, attaching them to cgroups and reading their maps.

mod bpffs;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::{fs::File, io, path::Path, path::PathBuf};

use aya::{
    Ebpf,
    maps::{MapError, PerCpuHashMap},
    programs::{
        CgroupAttachMode, CgroupSockAddr, ProgramError, cgroup_sock_addr::CgroupSockAddrLinkId,
    },
};
use ferrule_ebpf_common::{CONNECT_STATS_MAP, CONNECT4_PROGRAM};

pub use bpffs::{BPFFS_ROOT, Bpffs, ensure_bpffs};
pub use ferrule_ebpf_common::ConnectStats;

/// The eBPF object file (ELF) produced by `build.rs`; empty when built with `AYA_BUILD_SKIP=1`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ferrule-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the agent was built with AYA_BUILD_SKIP=1, so it carries no eBPF programs")]
    NotBuilt,
    #[error("loading the eBPF object (creating its maps)")]
    Load(#[from] aya::EbpfError),
    #[error("the eBPF object has no program `{0}`")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("eBPF program `{name}`")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("eBPF map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("opening cgroup {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
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

/// Loads the `cgroup/connect4` program (once) and attaches it to the cgroup v2 directory
/// `cgroup`, alongside any programs others attached there (via a bpf_link). It stays attached until the link is
/// detached or `ebpf` is dropped.
pub fn attach_connect4(ebpf: &mut Ebpf, cgroup: &Path) -> Result<CgroupSockAddrLinkId, Error> {
    let program_error = |source| Error::Program {
        name: CONNECT4_PROGRAM,
        source,
    };
    let program: &mut CgroupSockAddr = ebpf
        .program_mut(CONNECT4_PROGRAM)
        .ok_or(Error::MissingProgram(CONNECT4_PROGRAM))?
        .try_into()
        .map_err(program_error)?;
    if program.fd().is_err() {
        program.load().map_err(program_error)?;
    }
    let cgroup_dir = File::open(cgroup).map_err(|source| Error::Cgroup {
        path: cgroup.to_owned(),
        source,
    })?;
    // On Linux >= 5.7 (which the program needs anyway) aya attaches through a bpf_link: those
    // always coexist with other programs on the cgroup, and the kernel rejects any mode flag.
    program
        .attach(&cgroup_dir, CgroupAttachMode::Single)
        .map_err(program_error)
}

/// Connect counters of the network namespace with cookie `netns_cookie` (all zero if the
/// connect4 program has not seen it).
pub fn connect_stats(ebpf: &Ebpf, netns_cookie: u64) -> Result<ConnectStats, Error> {
    let map_error = |source| Error::Map {
        name: CONNECT_STATS_MAP,
        source,
    };
    let map = ebpf
        .map(CONNECT_STATS_MAP)
        .ok_or(Error::MissingMap(CONNECT_STATS_MAP))?;
    let stats: PerCpuHashMap<_, u64, ConnectStats> =
        PerCpuHashMap::try_from(map).map_err(map_error)?;
    match stats.get(&netns_cookie, 0) {
        Ok(per_cpu) => Ok(per_cpu
            .iter()
            .fold(ConnectStats::default(), |sum, cpu| sum.merged(*cpu))),
        Err(MapError::KeyNotFound) => Ok(ConnectStats::default()),
        Err(source) => Err(map_error(source)),
    }
}
