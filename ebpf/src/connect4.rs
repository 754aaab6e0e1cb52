//! Logic of the `cgroup/connect4` program.

use aya_ebpf::{
    bindings::BPF_NOEXIST, macros::map, maps::PerCpuHashMap, programs::SockAddrContext,
};
use ferrule_ebpf_common::{CONNECT_STATS_MAX_ENTRIES, ConnectStats};

use crate::kernel;

/// Verdict that lets `connect()` proceed; 0 would fail it with `EPERM`.
const ALLOW: i32 = 1;

/// Keyed by network-namespace cookie; see `ferrule_ebpf_common::CONNECT_STATS_MAP`.
#[map]
static CONNECT_STATS: PerCpuHashMap<u64, ConnectStats> =
    PerCpuHashMap::with_max_entries(CONNECT_STATS_MAX_ENTRIES, 0);

pub(crate) fn try_connect4_capture(ctx: &SockAddrContext) -> Result<i32, i32> {
    if !kernel::is_tcp_stream(ctx) {
        return Ok(ALLOW);
    }
    // Counting is best effort: a full map must never break the pod's connect().
    count_tcp_connect(kernel::netns_cookie(ctx)).map_err(|_| ALLOW)?;
    Ok(ALLOW)
}

/// Error from the kernel's map update (a negative errno).
struct MapFull;

fn count_tcp_connect(netns_cookie: u64) -> Result<(), MapFull> {
    if let Some(stats) = CONNECT_STATS.get_ptr_mut(netns_cookie) {
        kernel::add_tcp_connect(stats);
        return Ok(());
    }
    let first = ConnectStats { tcp_connects: 1 };
    if CONNECT_STATS
        .insert(netns_cookie, first, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        return Ok(());
    }
    // Either another program run created the entry between our lookup and insert (count on
    // it), or the map is full.
    let stats = CONNECT_STATS.get_ptr_mut(netns_cookie).ok_or(MapFull)?;
    kernel::add_tcp_connect(stats);
    Ok(())
}
