//! `sockops`: once a redirected socket has its local address (the SYN is about to leave), move
//! its original destination from the socket-cookie map to a map keyed by what the agent can see
//! of the accepted connection: the pod's network namespace plus the client's address and port
//! (the accepted socket's peer). The netns cookie keeps pods with identical ports apart, and
//! picks the pod's own flow map, so one pod's connections never evict another pod's entries.

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_SOCK_OPS_TCP_CONNECT_CB, BPF_TCP_CLOSE, BPF_TCP_SYN_SENT,
    },
    programs::SockOpsContext,
};
use ferrule_ebpf_common::{FlowKey, ipv4_mapped};

use crate::{
    kernel,
    maps::{POD_FLOWS, PodFlows, SOCKET_DST},
};

const AF_INET6: u32 = 10;

pub(crate) fn try_sock_ops(ctx: &SockOpsContext) -> Result<u32, u32> {
    match ctx.op() {
        // TCP_CONNECT runs before the SYN is sent, so the entry exists before the agent can
        // accept; ACTIVE_ESTABLISHED is a second chance that is a no-op once the entry moved.
        BPF_SOCK_OPS_TCP_CONNECT_CB | BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => bind_original(ctx),
        BPF_SOCK_OPS_STATE_CB => forget_if_never_connected(ctx),
        _ => {}
    }
    Ok(1)
}

fn bind_original(ctx: &SockOpsContext) {
    let socket = kernel::socket_cookie(ctx);
    let Some(original) = SOCKET_DST.get_ptr(socket).map(kernel::read_value) else {
        return; // not a redirected socket
    };
    let key = flow_key(ctx);
    // A pod without a flow map (enrollment not finished) gets no entry: the agent then finds
    // no original destination and refuses the connection, which fails closed.
    let Some(flows) = pod_flows(key.netns_cookie) else {
        return;
    };
    if flows.insert(key, original, 0).is_err() {
        return;
    }
    let _ = SOCKET_DST.remove(socket);
    // Ask for state changes, to drop the entry of a connect the agent never accepted.
    let _ = ctx.set_cb_flags(ctx.cb_flags() as i32 | BPF_SOCK_OPS_STATE_CB_FLAG as i32);
}

/// A connect that failed (refused while the agent restarts, timed out) never reaches the agent:
/// remove its entry now instead of waiting for LRU eviction. Entries of accepted connections
/// are kept after close, because a client may close before the agent has looked it up; the LRU
/// map recycles them.
fn forget_if_never_connected(ctx: &SockOpsContext) {
    let (old_state, new_state) = (ctx.arg(0), ctx.arg(1));
    if old_state == BPF_TCP_SYN_SENT && new_state == BPF_TCP_CLOSE {
        let key = flow_key(ctx);
        if let Some(flows) = pod_flows(key.netns_cookie) {
            let _ = flows.remove(key);
        }
    }
}

fn pod_flows(netns_cookie: u64) -> Option<&'static PodFlows> {
    kernel::inner_map(&POD_FLOWS, netns_cookie)
}

fn flow_key(ctx: &SockOpsContext) -> FlowKey {
    FlowKey::new(
        kernel::netns_cookie(ctx),
        local_ip(ctx),
        kernel::local_port(ctx),
    )
}

/// The socket's local address as the agent's listener sees the peer. A dual-stack socket talking
/// IPv4 has its IPv4 address in `local_ip4`; its `local_ip6` is only filled in after the connect
/// hook ran, so the remote address decides the family.
fn local_ip(ctx: &SockOpsContext) -> [u8; 16] {
    // All fields are read unconditionally (volatile reads are never merged or skipped): the
    // verifier rejects the single load with a computed context offset that the compiler would
    // otherwise make of "read this field or that one".
    let v4 = ipv4_mapped(kernel::local_ip4(ctx));
    let v6 = kernel::local_ip6(ctx);
    let remote = kernel::remote_ip6(ctx);
    let ipv6_peer = remote[..12] != [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    if ctx.family() == AF_INET6 && ipv6_peer {
        v6
    } else {
        v4
    }
}
