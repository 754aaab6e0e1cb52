//! Reads of kernel-owned memory: the program context and map values. All of the eBPF crate's
//! unsafe code lives here, behind safe functions.
#![allow(
    unsafe_code,
    reason = "context and map-value access needs raw pointers"
)]

use aya_ebpf::{EbpfContext as _, helpers::bpf_get_netns_cookie, programs::SockAddrContext};
use ferrule_ebpf_common::ConnectStats;

const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;

/// Whether the socket calling `connect()` is TCP (not UDP, ICMP or raw).
pub(crate) fn is_tcp_stream(ctx: &SockAddrContext) -> bool {
    // SAFETY: for cgroup/connect4 the kernel passes a valid `bpf_sock_addr`; the verifier
    // rewrites these context loads into reads of the socket, and `type`/`protocol` are readable
    // for every sock_addr attach type.
    let (sock_type, protocol) = unsafe { ((*ctx.sock_addr).type_, (*ctx.sock_addr).protocol) };
    sock_type == SOCK_STREAM && protocol == IPPROTO_TCP
}

/// Cookie of the network namespace the connecting socket lives in (stable for its lifetime).
pub(crate) fn netns_cookie(ctx: &SockAddrContext) -> u64 {
    // SAFETY: `bpf_get_netns_cookie` accepts a sock_addr program's own context (Linux 5.7+) and
    // only reads it.
    unsafe { bpf_get_netns_cookie(ctx.as_ptr()) }
}

/// Adds one TCP connect to this CPU's copy of a per-CPU `ConnectStats` map value.
pub(crate) fn add_tcp_connect(stats: *mut ConnectStats) {
    // SAFETY: `stats` comes from a successful lookup in a per-CPU map, so it points to this
    // CPU's live, aligned copy of the value for the rest of this program run, which cannot
    // migrate to another CPU; no other CPU writes this copy.
    unsafe { (*stats).tcp_connects = (*stats).tcp_connects.wrapping_add(1) };
}
