//! The four capture programs: loading the embedded object as one program version and pinning
//! it, re-opening a version's pins (what every agent start does, fresh load or not), and
//! attaching to a pod cgroup.

use std::{fs::File, path::Path};

use aya::{
    EbpfLoader,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, Program, ProgramFd,
        SockOps, cgroup_sock_addr::CgroupSockAddrAttachType, links::FdLink,
    },
};
use ferrule_ebpf_common::{
    ALL_MAPS, CONNECT4_PROGRAM, CONNECT6_PROGRAM, INGRESS_PROGRAM, PROGRAM_VERSION_GLOBAL,
    SOCK_OPS_PROGRAM,
};

use super::{Error, layout::Layout};

/// Every program, in the order they are attached to a pod (the ingress guard last, so a pod is
/// never strict before its outbound capture is in place; the order does not matter for safety).
pub(super) const PROGRAMS: [&str; 4] = [
    CONNECT4_PROGRAM,
    CONNECT6_PROGRAM,
    SOCK_OPS_PROGRAM,
    INGRESS_PROGRAM,
];

/// Loads the embedded object as program version `version` and pins its programs under
/// `progs/v<version>` (through a staging directory, so that a crash never leaves an incomplete
/// set there). Maps already pinned by an earlier agent are reused by name (so pod configuration
/// and connection state survive); missing ones are created and pinned. The returned loader
/// state is dropped: the pins keep everything alive.
pub(super) fn load_and_pin(layout: &Layout, version: u32) -> Result<(), Error> {
    let object = crate::ebpf::object();
    if object.is_empty() {
        return Err(Error::NotBuilt);
    }
    let map_pins: Vec<_> = ALL_MAPS
        .iter()
        .map(|name| (*name, layout.map(name)))
        .collect();
    let mut loader = EbpfLoader::new();
    for (name, path) in &map_pins {
        loader.map_pin_path(name, path.as_path());
    }
    // Must exist: an object without the global would silently load as an unversioned one.
    loader.override_global(PROGRAM_VERSION_GLOBAL, &version, true);
    let mut ebpf = loader.load(object)?;
    let staging = layout.prepare_staging(version)?;
    for name in PROGRAMS {
        let program = ebpf.program_mut(name).ok_or(Error::MissingProgram(name))?;
        load(name, program)?;
        let path = staging.join(name);
        program
            .pin(&path)
            .map_err(|source| Error::Pin { path, source })?;
    }
    layout.commit_staging(version)
}

fn load(name: &'static str, program: &mut Program) -> Result<(), Error> {
    let result = match program {
        Program::CgroupSockAddr(p) => p.load(),
        Program::SockOps(p) => p.load(),
        Program::CgroupSkb(p) => p.load(),
        _ => return Err(Error::UnexpectedProgramType(name)),
    };
    result.map_err(|source| Error::Program { name, source })
}

/// The pinned programs of one version, ready to attach to pod cgroups.
pub(super) struct Programs {
    version: u32,
    connect4: CgroupSockAddr,
    connect6: CgroupSockAddr,
    sock_ops: SockOps,
    ingress: CgroupSkb,
}

impl Programs {
    pub(super) fn from_pins(layout: &Layout, version: u32) -> Result<Self, Error> {
        let pin = |name: &'static str| layout.program(version, name);
        let error = |name| move |source| Error::Program { name, source };
        Ok(Self {
            version,
            connect4: CgroupSockAddr::from_pin(
                pin(CONNECT4_PROGRAM),
                CgroupSockAddrAttachType::Connect4,
            )
            .map_err(error(CONNECT4_PROGRAM))?,
            connect6: CgroupSockAddr::from_pin(
                pin(CONNECT6_PROGRAM),
                CgroupSockAddrAttachType::Connect6,
            )
            .map_err(error(CONNECT6_PROGRAM))?,
            sock_ops: SockOps::from_pin(pin(SOCK_OPS_PROGRAM)).map_err(error(SOCK_OPS_PROGRAM))?,
            ingress: CgroupSkb::from_pin(pin(INGRESS_PROGRAM), CgroupSkbAttachType::Ingress)
                .map_err(error(INGRESS_PROGRAM))?,
        })
    }

    pub(super) fn version(&self) -> u32 {
        self.version
    }

    /// The kernel's handle on program `name`, to switch links to it.
    pub(super) fn fd(&self, name: &'static str) -> Result<&ProgramFd, Error> {
        let fd = match name {
            CONNECT4_PROGRAM => self.connect4.fd(),
            CONNECT6_PROGRAM => self.connect6.fd(),
            SOCK_OPS_PROGRAM => self.sock_ops.fd(),
            _ => self.ingress.fd(),
        };
        fd.map_err(|source| Error::Program { name, source })
    }

    /// The kernel's id of program `name`.
    pub(super) fn id(&self, name: &'static str) -> Result<u32, Error> {
        let info = match name {
            CONNECT4_PROGRAM => self.connect4.info(),
            CONNECT6_PROGRAM => self.connect6.info(),
            SOCK_OPS_PROGRAM => self.sock_ops.info(),
            _ => self.ingress.info(),
        };
        info.map(|info| info.id())
            .map_err(|source| Error::Program { name, source })
    }

    /// Attaches program `name` to `cgroup` through a bpf_link and hands the link over, for the
    /// caller to pin (an unpinned link detaches when dropped).
    pub(super) fn attach(&mut self, name: &'static str, cgroup: &File) -> Result<FdLink, Error> {
        let program_error = |source| Error::Program { name, source };
        let link_error = |source| Error::Link { name, source };
        // bpf_links always coexist with other programs on the cgroup (other agents, the
        // container runtime); the kernel rejects mode flags for them.
        let mode = CgroupAttachMode::Single;
        match name {
            CONNECT4_PROGRAM => {
                let id = self.connect4.attach(cgroup, mode).map_err(program_error)?;
                let link = self.connect4.take_link(id).map_err(program_error)?;
                FdLink::try_from(link).map_err(link_error)
            }
            CONNECT6_PROGRAM => {
                let id = self.connect6.attach(cgroup, mode).map_err(program_error)?;
                let link = self.connect6.take_link(id).map_err(program_error)?;
                FdLink::try_from(link).map_err(link_error)
            }
            SOCK_OPS_PROGRAM => {
                let id = self.sock_ops.attach(cgroup, mode).map_err(program_error)?;
                let link = self.sock_ops.take_link(id).map_err(program_error)?;
                FdLink::try_from(link).map_err(link_error)
            }
            _ => {
                let ingress = CgroupSkbAttachType::Ingress;
                let id = self
                    .ingress
                    .attach(cgroup, ingress, mode)
                    .map_err(program_error)?;
                let link = self.ingress.take_link(id).map_err(program_error)?;
                FdLink::try_from(link).map_err(link_error)
            }
        }
    }
}

/// Opens a cgroup v2 directory for attaching.
pub(super) fn open_cgroup(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|source| Error::Cgroup {
        path: path.to_owned(),
        source,
    })
}
