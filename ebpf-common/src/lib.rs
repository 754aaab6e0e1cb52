//! The contract between Ferrule's eBPF programs and the node agent: map names and the
//! `#[repr(C)]` types stored in them. Both sides compile this crate, so a layout change is a
//! compile-time change on both.
#![no_std]

#[cfg(feature = "user")]
mod pod;

/// Program in section `cgroup/connect4`; aya names programs after their function.
pub const CONNECT4_PROGRAM: &str = "connect4_capture";

/// `PerCpuHashMap<u64, ConnectStats>` keyed by network-namespace cookie
/// (`bpf_get_netns_cookie`). Per-CPU because the BPF target has no atomic read-modify-write in
/// Rust, and per-CPU counters need none; readers sum the CPUs with [`ConnectStats::merged`].
/// Kernel map names are capped at 15 bytes, so keep map names short.
pub const CONNECT_STATS_MAP: &str = "CONNECT_STATS";

/// How many network namespaces `CONNECT_STATS` can track; one per pod plus the node's own.
pub const CONNECT_STATS_MAX_ENTRIES: u32 = 16_384;

/// Per-network-namespace counters kept by the connect4 program.
///
/// Only `u64` fields: no padding, so every byte the kernel copies is initialised and any bit
/// pattern is a valid value (what `aya::Pod` requires).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectStats {
    /// TCP `connect()` calls seen (UDP and other socket types are not counted).
    pub tcp_connects: u64,
}

impl ConnectStats {
    /// Field-wise sum, to combine the per-CPU copies of one entry.
    #[must_use]
    pub const fn merged(self, other: Self) -> Self {
        Self {
            tcp_connects: self.tcp_connects.wrapping_add(other.tcp_connects),
        }
    }
}
