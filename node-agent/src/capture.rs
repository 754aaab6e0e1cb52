//! Transparent capture with eBPF (no iptables): the agent's side of the programs in `ebpf/`.
//!
//! For each enrolled pod (a cgroup v2 directory plus a network namespace) four programs are
//! attached to the pod's cgroup:
//! - `cgroup/connect4` and `connect6` rewrite outbound TCP connects to the agent's outbound
//!   listener on 127.0.0.1 (or [::1]) in the pod's netns, unless the destination is excluded
//!   (loopback, the pod's own IPs, DNS, configured ports and CIDRs), and record where the
//!   connection was going. UDP is never touched.
//! - `sockops` binds that record to the connection's (netns, client address, client port), which
//!   [`Capture::original_destination`] looks up for an accepted socket.
//! - `cgroup_skb/ingress` drops connection attempts to the pod that do not come over loopback
//!   (strict), or accepts and counts them (permissive).
//!
//! The agent runs in the node's root cgroup, so none of this applies to its own sockets, even
//! those it opens inside a pod's netns (its listeners and its connections to the application).
//!
//! Programs, maps and per-pod links are pinned in bpffs, so they outlive the agent: while it is
//! down, redirected connects are refused (nothing listens on the outbound port; nothing leaves
//! in plaintext) and strict pods keep dropping inbound connection attempts. A new agent adopts
//! the pins ([`Capture::load_or_adopt`]) instead of loading anew. Only [`uninstall`] takes them
//! off the node, from the pins alone.
//!
//! Programs carry a version ([`CaptureConfig::program_version`], by default
//! [`ferrule_ebpf_common::PROGRAM_VERSION`], baked into the loaded programs) and are pinned per
//! version. An agent adopts the programs of its own version, or loads them, and then switches
//! every existing pod link still running another version to them in place (`BPF_LINK_UPDATE`),
//! so an upgrade or a downgrade has no moment without capture. Once every link runs its
//! version, the agent removes the pins of the others. [`Capture::links_by_version`] tells
//! which versions the links run, for status and metrics.

mod addr;
#[cfg(any(test, feature = "testing"))]
pub mod inspect;
mod layout;
mod maps;
mod programs;
mod sys;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod uninstall;
mod versions;

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::{IpAddr, SocketAddr},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use aya::{
    maps::MapError,
    pin::PinError,
    programs::{
        ProgramError,
        links::{LinkError, PinnedLink},
    },
};
use ferrule_ebpf_common::{
    FlowKey, INBOUND_PERMISSIVE, INBOUND_STRICT, PROGRAM_VERSION, PodConfig, Settings,
};
use tracing::info;

use layout::Layout;
use maps::{ConfigMaps, Lookups};
use programs::{PROGRAMS, Programs};

pub use ferrule_ebpf_common::{ConnectStats, InboundStats};
pub use sys::netns_cookie_of;
pub use uninstall::{PinDir, UninstallReport, uninstall};

/// Where programs, maps and links are pinned unless configured otherwise (shared with the node
/// checks, which look at the same directory).
pub use ferrule_node_checks::DEFAULT_PIN_DIR;
/// The agent's outbound listener port in each pod's network namespace.
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the agent was built with AYA_BUILD_SKIP=1, so it carries no eBPF programs")]
    NotBuilt,
    #[error("the outbound port must not be 0")]
    InvalidOutboundPort,
    #[error("the eBPF program version must not be 0 (it stands for programs from before versions)")]
    InvalidProgramVersion,
    #[error("excluded CIDR {addr}/{prefix}: the prefix is longer than the address")]
    InvalidCidr { addr: IpAddr, prefix: u8 },
    #[error("preparing bpffs for the pin directory")]
    Bpffs(#[source] crate::ebpf::Error),
    #[error("pin directory {path}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("loading the eBPF object (creating or reusing its maps)")]
    Load(#[from] aya::EbpfError),
    #[error("the eBPF object has no program `{0}`")]
    MissingProgram(&'static str),
    #[error("eBPF program `{0}` is not of the type the agent expects")]
    UnexpectedProgramType(&'static str),
    #[error("eBPF program `{name}`")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("bpf_link of program `{name}`")]
    Link {
        name: &'static str,
        #[source]
        source: LinkError,
    },
    #[error("pinning {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("eBPF map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("cgroup {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "netns {netns_cookie} was enrolled with cgroup id {enrolled}, not the given cgroup {given}"
    )]
    CgroupMismatch {
        netns_cookie: u64,
        enrolled: u64,
        given: u64,
    },
    #[error("Ferrule is being uninstalled from this node: no pod is captured any more")]
    Uninstalling,
}

/// Node-wide capture settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// bpffs directory for the pins; mounted if no bpffs is there yet.
    pub pin_dir: PathBuf,
    /// The agent's outbound listener port (on 127.0.0.1 and [::1] in each pod's netns).
    pub outbound_port: u16,
    /// Destination ports never redirected (53 never is, whatever this says).
    pub excluded_ports: Vec<u16>,
    /// Destination networks never redirected, as (address, prefix length).
    pub excluded_cidrs: Vec<(IpAddr, u8)>,
    /// Version of the eBPF programs this agent runs (not 0). Every pod link is switched to it.
    pub program_version: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            outbound_port: DEFAULT_OUTBOUND_PORT,
            excluded_ports: Vec::new(),
            excluded_cidrs: Vec::new(),
            program_version: PROGRAM_VERSION,
        }
    }
}

/// What happens to connection attempts reaching a pod from outside (not over loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundMode {
    /// Dropped: only the agent (over loopback in the pod's netns) may connect to the pod.
    Strict,
    /// Accepted as plaintext, and counted ([`Capture::plaintext_accepted`]).
    Permissive,
}

/// A pod to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCapture {
    /// The pod's cgroup v2 directory; its processes (and their sockets) are captured.
    pub cgroup: PathBuf,
    /// Cookie of the pod's network namespace ([`netns_cookie_of`] a socket opened in it).
    pub netns_cookie: u64,
    /// The pod's own addresses: connects to them stay inside the pod.
    pub ips: Vec<IpAddr>,
    pub mode: InboundMode,
}

/// The loaded (or adopted) capture programs and maps. `Send + Sync`: share it behind an `Arc`.
pub struct Capture {
    layout: Layout,
    program_version: u32,
    programs: Mutex<Programs>,
    config: Mutex<ConfigMaps>,
    lookups: Lookups,
    adopted: bool,
    /// Set by [`Capture::stop_enrolling`]: nothing is pinned any more.
    stopped: AtomicBool,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("pin_dir", &self.layout.root())
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Capture>();
};

impl Capture {
    /// Adopts the programs (of `config.program_version`), maps and pod links a previous agent
    /// pinned under `config.pin_dir`, or loads and pins the programs if that version is not
    /// pinned; applies `config`; then switches every pod link running another version to this
    /// one and removes the other versions' pins. Mounts bpffs if needed. Needs root
    /// (`CAP_BPF`, `CAP_NET_ADMIN`, `CAP_SYS_ADMIN`).
    pub fn load_or_adopt(config: &CaptureConfig) -> Result<Self, Error> {
        let settings = NodeSettings::validate(config)?;
        let version = config.program_version;
        let layout = Layout::new(&config.pin_dir);
        let bpffs = layout.prepare()?;
        let adopted = layout.has_all_pins(version);
        if !adopted {
            programs::load_and_pin(&layout, version)?;
        }
        let capture = Self {
            programs: Mutex::new(Programs::from_pins(&layout, version)?),
            config: Mutex::new(ConfigMaps::open(&layout)?),
            lookups: Lookups::open(&layout)?,
            layout,
            program_version: version,
            adopted,
            stopped: AtomicBool::new(false),
        };
        // Settings and flow maps first: a version with a renamed map must not run on an empty
        // one, nor switch a pod to programs that would find no flow map for it.
        settings.apply(&mut capture.config())?;
        for netns_cookie in capture.enrolled() {
            capture.config().ensure_pod_flows(netns_cookie)?;
        }
        versions::switch_links(&capture.layout, &capture.programs())?;
        info!(
            pin_dir = %config.pin_dir.display(),
            version,
            adopted,
            bpffs = ?bpffs,
            enrolled_pods = capture.enrolled().len(),
            "eBPF capture ready: {}",
            if adopted {
                "adopted the pinned programs, maps and pod links of a previous agent"
            } else {
                "loaded the programs and pinned them"
            }
        );
        Ok(capture)
    }

    /// Captures a pod: writes its mode and addresses, then attaches every program to its
    /// cgroup (each link pinned under `<pin_dir>/pods/<netns cookie>/`). Idempotent: enrolling
    /// again updates the mode and addresses and attaches only what is missing.
    pub fn enroll(&self, pod: &PodCapture) -> Result<(), Error> {
        let cgroup = programs::open_cgroup(&pod.cgroup)?;
        let cgroup_id = cgroup_id(&pod.cgroup, &cgroup)?;
        let inbound_mode = match pod.mode {
            InboundMode::Strict => INBOUND_STRICT,
            InboundMode::Permissive => INBOUND_PERMISSIVE,
        };
        let ips: BTreeSet<[u8; 16]> = pod.ips.iter().copied().map(addr::ip_key).collect();
        // Held throughout, so an enrollment and an unenrollment of one pod do not interleave
        // (and two enrollments do not both attach). Lock order: programs, then config.
        let mut programs = self.programs();
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Error::Uninstalling);
        }
        self.layout.claim_pod(pod.netns_cookie, cgroup_id)?;
        // Maps before links, so the programs see the pod's configuration from their first run.
        let mut maps = self.config();
        maps.ensure_pod_flows(pod.netns_cookie)?;
        maps.set_pod(pod.netns_cookie, PodConfig { inbound_mode }, &ips)?;
        drop(maps);
        for name in PROGRAMS {
            let path = self.layout.link(pod.netns_cookie, name);
            if path.exists() {
                continue;
            }
            let link = programs.attach(name, &cgroup)?;
            link.pin(&path)
                .map_err(|source| Error::Pin { path, source })?;
        }
        info!(
            netns_cookie = pod.netns_cookie,
            cgroup = %pod.cgroup.display(),
            mode = ?pod.mode,
            "pod captured"
        );
        Ok(())
    }

    /// Stops capturing a pod: detaches its programs (removing the link pins), then clears its
    /// map entries. `cgroup` must be the cgroup it was enrolled with, unless that cgroup is
    /// already gone (a deleted pod), in which case its links are defunct anyway.
    pub fn unenroll(&self, cgroup: &Path, netns_cookie: u64) -> Result<(), Error> {
        let _programs = self.programs();
        if let (Some(enrolled), Some(given)) = (
            self.layout.recorded_cgroup(netns_cookie),
            existing_cgroup_id(cgroup)?,
        ) && enrolled != given
        {
            return Err(Error::CgroupMismatch {
                netns_cookie,
                enrolled,
                given,
            });
        }
        self.detach(netns_cookie)?;
        self.config().clear_pod(netns_cookie)?;
        info!(netns_cookie, cgroup = %cgroup.display(), "pod released");
        Ok(())
    }

    /// Refuses every later enrollment, once an enrollment in progress has finished, so that
    /// nothing is pinned again while [`uninstall`] removes the pins.
    pub fn stop_enrolling(&self) {
        let _programs = self.programs();
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Whether this instance adopted the programs of its version that a previous agent pinned
    /// (rather than loading them anew).
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// The eBPF program version this agent runs, and attaches to pods.
    pub fn program_version(&self) -> u32 {
        self.program_version
    }

    /// How many pod links (four per captured pod) run each program version: keys are versions
    /// ("1", "2"), "0" for the programs of agents from before versions, and "unknown" for
    /// programs whose pins are gone. More than one key means a version switch is incomplete.
    /// A few syscalls per link: cheap enough for every metrics scrape.
    pub fn links_by_version(&self) -> BTreeMap<String, usize> {
        versions::links_by_version(&self.layout)
    }

    /// Network-namespace cookies of the captured pods (including those adopted from pins).
    pub fn enrolled(&self) -> Vec<u64> {
        self.layout.enrolled()
    }

    /// Where a redirected connection was going. `peer` is the peer address of the socket the
    /// agent accepted on its outbound listener in the pod's netns (netns `netns_cookie`).
    /// `None` if the connection was not redirected (or its record was lost): refuse it.
    pub fn original_destination(&self, netns_cookie: u64, peer: SocketAddr) -> Option<SocketAddr> {
        let key = FlowKey::new(netns_cookie, addr::ip_key(peer.ip()), peer.port());
        self.lookups
            .original_destination(&key)
            .map(addr::socket_addr)
    }

    /// Plaintext connection attempts a permissive pod accepted from outside.
    pub fn plaintext_accepted(&self, netns_cookie: u64) -> u64 {
        self.inbound_stats(netns_cookie).plaintext_accepted
    }

    /// Inbound counters of a pod (strict drops, permissive plaintext).
    pub fn inbound_stats(&self, netns_cookie: u64) -> InboundStats {
        self.lookups.inbound_stats(netns_cookie)
    }

    /// Outbound counters of a pod (TCP connects, of which redirected).
    pub fn connect_stats(&self, netns_cookie: u64) -> ConnectStats {
        self.lookups.connect_stats(netns_cookie)
    }

    /// Full teardown through a loaded capture (tests): releases every pod and removes all pins,
    /// so the kernel frees the programs and maps once nothing else holds them.
    pub fn remove_all(self) -> Result<(), Error> {
        for netns_cookie in self.enrolled() {
            self.detach(netns_cookie)?;
        }
        let Self { layout, .. } = self;
        layout.remove_all()?;
        info!(pin_dir = %layout.root().display(), "eBPF capture removed");
        Ok(())
    }

    /// Removes the pod's link pins (detaching the programs) and its pin directory.
    fn detach(&self, netns_cookie: u64) -> Result<(), Error> {
        for name in PROGRAMS {
            let path = self.layout.link(netns_cookie, name);
            if !path.exists() {
                continue;
            }
            let link =
                PinnedLink::from_pin(&path).map_err(|source| Error::Link { name, source })?;
            // Dropping the last reference to the link (our fd, once unpinned) detaches it.
            drop(
                link.unpin()
                    .map_err(|source| Error::PinDir { path, source })?,
            );
        }
        self.layout.release_pod(netns_cookie)
    }

    fn programs(&self) -> MutexGuard<'_, Programs> {
        // The programs are kernel objects; a holder's panic leaves nothing half-changed here.
        self.programs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn config(&self) -> MutexGuard<'_, ConfigMaps> {
        // Map handles stay consistent even if a holder panicked: the state lives in the kernel.
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The node-wide part of a [`CaptureConfig`], checked before anything touches the kernel.
struct NodeSettings {
    settings: Settings,
    ports: BTreeSet<u16>,
    cidrs: Vec<aya::maps::lpm_trie::Key<[u8; 16]>>,
}

impl NodeSettings {
    fn validate(config: &CaptureConfig) -> Result<Self, Error> {
        if config.outbound_port == 0 {
            return Err(Error::InvalidOutboundPort);
        }
        if config.program_version == 0 {
            return Err(Error::InvalidProgramVersion);
        }
        let cidrs = config
            .excluded_cidrs
            .iter()
            .map(|(addr, prefix)| addr::cidr_key(*addr, *prefix))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            settings: Settings {
                outbound_port: config.outbound_port,
                reserved: 0,
            },
            ports: config.excluded_ports.iter().copied().collect(),
            cidrs,
        })
    }

    fn apply(&self, maps: &mut ConfigMaps) -> Result<(), Error> {
        maps.apply_settings(self.settings, &self.ports, &self.cidrs)
    }
}

/// The id of the cgroup at `path`, or `None` if it was removed already.
fn existing_cgroup_id(path: &Path) -> Result<Option<u64>, Error> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata.ino())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Cgroup {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The cgroup's id: on cgroup v2, the inode number of its directory.
fn cgroup_id(path: &Path, cgroup: &std::fs::File) -> Result<u64, Error> {
    cgroup
        .metadata()
        .map(|metadata| metadata.ino())
        .map_err(|source| Error::Cgroup {
            path: path.to_owned(),
            source,
        })
}
