//! Per-CPU, per-network-namespace counters. Counting is best effort: a full map must never
//! change a verdict, so failures are swallowed here.

use aya_ebpf::{bindings::BPF_NOEXIST, maps::PerCpuHashMap};
use ferrule_ebpf_common::{ConnectStats, InboundStats};

use crate::{
    kernel,
    maps::{CONNECT_STATS, INBOUND_STATS},
};

pub(crate) fn tcp_connect(netns_cookie: u64, redirected: bool) {
    let add = ConnectStats {
        tcp_connects: 1,
        redirected: u64::from(redirected),
    };
    bump(&CONNECT_STATS, netns_cookie, add, ConnectStats::merged);
}

pub(crate) fn plaintext_accepted(netns_cookie: u64) {
    let add = InboundStats {
        plaintext_accepted: 1,
        dropped: 0,
    };
    bump(&INBOUND_STATS, netns_cookie, add, InboundStats::merged);
}

pub(crate) fn inbound_dropped(netns_cookie: u64) {
    let add = InboundStats {
        plaintext_accepted: 0,
        dropped: 1,
    };
    bump(&INBOUND_STATS, netns_cookie, add, InboundStats::merged);
}

/// Adds `add` to this CPU's copy of `map[key]`, creating the entry if needed.
fn bump<V: Copy>(map: &PerCpuHashMap<u64, V>, key: u64, add: V, merge: fn(V, V) -> V) {
    if let Some(value) = map.get_ptr_mut(key) {
        kernel::update_per_cpu(value, |current| merge(current, add));
        return;
    }
    if map.insert(key, add, u64::from(BPF_NOEXIST)).is_ok() {
        return;
    }
    // Another program run created the entry between our lookup and insert (count on it), or
    // the map is full (drop the count).
    if let Some(value) = map.get_ptr_mut(key) {
        kernel::update_per_cpu(value, |current| merge(current, add));
    }
}
