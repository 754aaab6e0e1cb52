//! `cgroup_skb/ingress`: inbound connections to a pod's own sockets. The agent reaches the
//! application over loopback inside the pod's network namespace (its HBONE listener belongs to
//! the agent's cgroup, not the pod's, so this program never sees that traffic); anything else
//! opening a connection to the pod is plaintext from outside the mesh.
//!
//! Only connection attempts are judged (packets delivered to a TCP listener): replies to the
//! pod's own outbound traffic (DNS, excluded destinations) and established connections pass, so
//! strict mode blocks plaintext inbound without breaking what the pod is allowed to reach.

use aya_ebpf::programs::SkBuffContext;
use ferrule_ebpf_common::INBOUND_PERMISSIVE;

use crate::{counters, kernel, maps::POD_CONFIG};

const PASS: i32 = 1;
const DROP: i32 = 0;
/// Every network namespace numbers its loopback device 1.
const LOOPBACK_IFINDEX: u32 = 1;
const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

pub(crate) fn try_ingress(ctx: &SkBuffContext) -> Result<i32, i32> {
    if kernel::ingress_ifindex(ctx) == LOOPBACK_IFINDEX || !kernel::delivered_to_tcp_listener(ctx) {
        return Ok(PASS);
    }
    let netns_cookie = kernel::netns_cookie(ctx);
    // A pod without configuration is strict: fail closed.
    let permissive = POD_CONFIG
        .get_ptr(netns_cookie)
        .is_some_and(|config| kernel::read_value(config).inbound_mode == INBOUND_PERMISSIVE);
    if !permissive {
        counters::inbound_dropped(netns_cookie);
        return Ok(DROP);
    }
    if is_initial_syn(ctx) {
        counters::plaintext_accepted(netns_cookie);
    }
    Ok(PASS)
}

/// Whether the packet (starting at its IP header) is a TCP SYN without ACK: one per connection
/// attempt, so the counter counts connections rather than packets.
fn is_initial_syn(ctx: &SkBuffContext) -> bool {
    let Some(tcp_offset) = tcp_header_offset(ctx) else {
        return false;
    };
    ctx.load::<u8>(tcp_offset + 13)
        .is_ok_and(|flags| flags & (TCP_SYN | TCP_ACK) == TCP_SYN)
}

/// Offset of the TCP header, for IPv4 and for IPv6 without extension headers.
fn tcp_header_offset(ctx: &SkBuffContext) -> Option<usize> {
    let first = ctx.load::<u8>(0).ok()?;
    match first >> 4 {
        4 => (ctx.load::<u8>(9).ok()? == IPPROTO_TCP).then_some(usize::from(first & 0x0f) * 4),
        6 => (ctx.load::<u8>(6).ok()? == IPPROTO_TCP).then_some(40),
        _ => None,
    }
}
