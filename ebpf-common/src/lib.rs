//! The contract between Ferrule's eBPF programs and the node agent: program and map names and
//! the `#[repr(C)]` types stored in the maps. Both sides compile this crate, so a layout change
//! is a compile-time change on both.
//!
//! Addresses are stored as 16 bytes in network order; IPv4 addresses as IPv4-mapped IPv6
//! (`::ffff:a.b.c.d`, see [`ipv4_mapped`]), so one key type and one LPM trie serve both families
//! and a dual-stack socket's v4-mapped destination matches the same entries as a plain IPv4 one.
//!
//! Every type has only explicitly named fields and no implicit padding: the kernel copies keys
//! and values byte for byte, so each byte must be initialised (what `aya::Pod` requires), and a
//! key with garbage padding would never match.
#![no_std]

#[cfg(feature = "user")]
mod pod;

/// `cgroup/connect4` program (aya names programs after their function).
pub const CONNECT4_PROGRAM: &str = "connect4_capture";
/// `cgroup/connect6` program.
pub const CONNECT6_PROGRAM: &str = "connect6_capture";
/// `sockops` program that binds a redirected socket's original destination to its 4-tuple.
pub const SOCK_OPS_PROGRAM: &str = "sock_ops_capture";
/// `cgroup_skb/ingress` program enforcing the pod's inbound mode.
pub const INGRESS_PROGRAM: &str = "ingress_guard";

/// Version of the eBPF programs. Bump it whenever the eBPF code changes: an agent pins its
/// programs per version and switches every pod's links to its own version's programs, so only
/// a bump makes a new agent replace the programs already running. Maps are shared by all
/// versions (reused by name, so pod configuration and in-flight connections survive an
/// upgrade): a map whose key, value or type changes gets a new name, so that old and new
/// programs never share an incompatible map.
pub const PROGRAM_VERSION: u32 = 2;
/// The global in the eBPF object holding the version; the loader sets it to the version it
/// loads, and every program reads it.
pub const PROGRAM_VERSION_GLOBAL: &str = "PROGRAM_VERSION";

// Kernel map names are capped at 15 bytes, so keep map names short.

/// `Array<Settings>` with one entry (index 0): node-wide capture settings.
pub const SETTINGS_MAP: &str = "SETTINGS";
/// `HashMap<u16, u8>`: destination ports never redirected (value unused).
pub const EXCLUDED_PORTS_MAP: &str = "EXCL_PORTS";
/// `LpmTrie<[u8; 16], u8>`: destination CIDRs never redirected (value unused).
pub const EXCLUDED_CIDRS_MAP: &str = "EXCL_CIDRS";
/// `HashMap<u64, PodConfig>` keyed by network-namespace cookie.
pub const POD_CONFIG_MAP: &str = "POD_CONFIG";
/// `HashMap<PodIpKey, u8>`: each enrolled pod's own addresses (value unused).
pub const POD_IPS_MAP: &str = "POD_IPS";
/// `LruHashMap<u64, OriginalDst>` keyed by socket cookie: written by connect4/6, moved to
/// `FLOW_DST` by sock_ops once the socket has its local port.
pub const SOCKET_DST_MAP: &str = "SOCKET_DST";
/// `HashOfMaps<u64, LruHashMap<FlowKey, OriginalDst>>` keyed by network-namespace cookie: what
/// the agent looks up for an accepted connection. Each pod has its own inner map, created by the
/// agent when it enrolls the pod, so a pod that opens connections faster than the agent accepts
/// them evicts only its own entries, never another pod's (program version 2 and later).
pub const POD_FLOWS_MAP: &str = "POD_FLOWS";
/// Version 1's single `LruHashMap<FlowKey, OriginalDst>` shared by all pods. Only read, while
/// connections that version-1 programs captured before an upgrade are still being accepted.
pub const LEGACY_FLOW_DST_MAP: &str = "FLOW_DST";
/// `PerCpuHashMap<u64, ConnectStats>` keyed by network-namespace cookie.
pub const CONNECT_STATS_MAP: &str = "CONNECT_STATS";
/// `PerCpuHashMap<u64, InboundStats>` keyed by network-namespace cookie.
pub const INBOUND_STATS_MAP: &str = "INBOUND_STATS";

/// Every map, for pinning and re-adoption.
pub const ALL_MAPS: [&str; 9] = [
    SETTINGS_MAP,
    EXCLUDED_PORTS_MAP,
    EXCLUDED_CIDRS_MAP,
    POD_CONFIG_MAP,
    POD_IPS_MAP,
    SOCKET_DST_MAP,
    POD_FLOWS_MAP,
    CONNECT_STATS_MAP,
    INBOUND_STATS_MAP,
];

/// Maps of earlier program versions that this version no longer uses; an agent removes their
/// pins once every pod link runs its programs (and uninstall removes them too).
pub const RETIRED_MAPS: [&str; 1] = [LEGACY_FLOW_DST_MAP];

/// One entry per pod network namespace, plus the node's own.
pub const POD_MAX_ENTRIES: u32 = 16_384;
/// Pod addresses across all pods (a few per pod).
pub const POD_IPS_MAX_ENTRIES: u32 = 4 * POD_MAX_ENTRIES;
pub const EXCLUDED_PORTS_MAX_ENTRIES: u32 = 1_024;
pub const EXCLUDED_CIDRS_MAX_ENTRIES: u32 = 1_024;
/// Sockets between `connect()` and their SYN (the same syscall), keyed by socket cookie. Shared
/// by all pods, but an entry lives only within one `connect()` call, so at most one per CPU is
/// in use at any time; LRU ages out the entries of connects that failed in between.
pub const SOCKET_DST_MAX_ENTRIES: u32 = 65_536;
/// Capacity of one pod's flow map (`POD_FLOWS`): redirected connections of that pod whose
/// original destination the agent may still have to look up. LRU: entries of connections the
/// agent never accepted age out instead of filling the map, and a pod connecting faster than
/// the agent accepts evicts only its own oldest entries. Fixed, not configurable: the kernel
/// requires every inner hash map to match the outer map's template, which outlives agents.
/// About 100 bytes of kernel memory per slot and pod.
pub const POD_FLOW_SLOTS: u32 = 1_024;

/// DNS is never redirected, whatever the excluded ports say (TCP DNS included).
pub const DNS_PORT: u16 = 53;

/// `PodConfig::inbound_mode`: only loopback (the agent) may open connections to the pod.
/// Any value other than [`INBOUND_PERMISSIVE`] (including a missing entry) is treated as strict,
/// so a half-written configuration fails closed.
pub const INBOUND_STRICT: u32 = 1;
/// `PodConfig::inbound_mode`: plaintext inbound connections are accepted and counted.
pub const INBOUND_PERMISSIVE: u32 = 2;

/// Node-wide settings (entry 0 of `SETTINGS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Port of the agent's outbound listener on 127.0.0.1 / [::1] in each pod's netns. 0 means
    /// not configured yet: redirected connects are then refused rather than let through.
    pub outbound_port: u16,
    pub reserved: u16,
}

/// Per-pod settings, keyed by the pod's network-namespace cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodConfig {
    /// [`INBOUND_STRICT`] or [`INBOUND_PERMISSIVE`].
    pub inbound_mode: u32,
}

/// One of a pod's own addresses; connects to them are not redirected.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodIpKey {
    pub netns_cookie: u64,
    pub ip: [u8; 16],
}

/// A redirected connection's destination as the application asked for it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginalDst {
    pub ip: [u8; 16],
    /// Host byte order.
    pub port: u16,
}

/// A redirected connection as the agent sees it: the accepted socket's peer address in the
/// pod's network namespace. The netns cookie keeps pods that reuse the same local ports apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub netns_cookie: u64,
    pub ip: [u8; 16],
    /// Host byte order.
    pub port: u16,
    /// Always zero; spelled out so that no key byte is padding.
    pub reserved: [u8; 6],
}

impl FlowKey {
    #[must_use]
    pub const fn new(netns_cookie: u64, ip: [u8; 16], port: u16) -> Self {
        Self {
            netns_cookie,
            ip,
            port,
            reserved: [0; 6],
        }
    }
}

/// Per-network-namespace counters kept by the connect programs. Per-CPU because the BPF target
/// has no atomic read-modify-write in Rust; readers sum the CPUs with [`ConnectStats::merged`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectStats {
    /// TCP `connect()` calls seen (UDP and other socket types are not counted).
    pub tcp_connects: u64,
    /// Of those, connects redirected to the agent's outbound listener.
    pub redirected: u64,
}

impl ConnectStats {
    /// Field-wise sum, to combine the per-CPU copies of one entry.
    #[must_use]
    pub const fn merged(self, other: Self) -> Self {
        Self {
            tcp_connects: self.tcp_connects.wrapping_add(other.tcp_connects),
            redirected: self.redirected.wrapping_add(other.redirected),
        }
    }
}

/// Per-network-namespace counters kept by the ingress program (per-CPU, like [`ConnectStats`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// Permissive pods: plaintext connection attempts (SYNs) accepted from outside the pod.
    pub plaintext_accepted: u64,
    /// Strict pods: packets of connection attempts from outside the pod that were dropped.
    pub dropped: u64,
}

impl InboundStats {
    /// Field-wise sum, to combine the per-CPU copies of one entry.
    #[must_use]
    pub const fn merged(self, other: Self) -> Self {
        Self {
            plaintext_accepted: self
                .plaintext_accepted
                .wrapping_add(other.plaintext_accepted),
            dropped: self.dropped.wrapping_add(other.dropped),
        }
    }
}

/// `::ffff:a.b.c.d`: how IPv4 addresses are stored in the maps.
#[must_use]
pub const fn ipv4_mapped(octets: [u8; 4]) -> [u8; 16] {
    let [a, b, c, d] = octets;
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d]
}

/// Prefix length of an IPv4 CIDR once mapped into the IPv6 key space.
pub const IPV4_MAPPED_PREFIX: u32 = 96;

// The layouts both sides rely on: no implicit padding anywhere.
const _: () = {
    assert!(size_of::<Settings>() == 4);
    assert!(size_of::<PodConfig>() == 4);
    assert!(size_of::<PodIpKey>() == 24);
    assert!(size_of::<OriginalDst>() == 18);
    assert!(size_of::<FlowKey>() == 32);
    assert!(size_of::<ConnectStats>() == 16);
    assert!(size_of::<InboundStats>() == 16);
};
