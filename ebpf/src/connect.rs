//! `cgroup/connect4` and `cgroup/connect6`: send the pod's outbound TCP connections to the
//! agent's outbound listener inside the pod's network namespace, and remember where they were
//! going.
//!
//! The agent itself runs in the node's root cgroup, and these programs are attached only to pod
//! cgroups, so the agent's own connections (including the ones it makes on behalf of pods) are
//! never redirected; no mark or uid check is needed to avoid loops.

use aya_ebpf::{maps::lpm_trie::Key, programs::SockAddrContext};
use ferrule_ebpf_common::{DNS_PORT, OriginalDst, PodIpKey, ipv4_mapped};

use crate::{
    counters, kernel,
    maps::{EXCL_CIDRS, EXCL_PORTS, POD_IPS, SETTINGS, SOCKET_DST},
};

/// Verdict that lets `connect()` proceed (possibly to a rewritten address).
const ALLOW: i32 = 1;
/// Verdict that fails `connect()` with `EPERM`.
const DENY: i32 = 0;

const LOCALHOST_V4: [u8; 4] = [127, 0, 0, 1];
const LOCALHOST_V6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// The agent's IPv4 listener, as a dual-stack socket must name it.
const LOCALHOST_V4_MAPPED: [u8; 16] = ipv4_mapped(LOCALHOST_V4);

pub(crate) fn try_connect4(ctx: &SockAddrContext) -> Result<i32, i32> {
    if !kernel::is_tcp_stream(ctx) {
        return Ok(ALLOW);
    }
    let original = OriginalDst {
        ip: ipv4_mapped(kernel::user_ip4(ctx)),
        port: kernel::user_port(ctx),
    };
    let Some(outbound_port) = redirect_port(ctx, &original)? else {
        return Ok(ALLOW);
    };
    kernel::set_user_ip4(ctx, LOCALHOST_V4);
    kernel::set_user_port(ctx, outbound_port);
    Ok(ALLOW)
}

pub(crate) fn try_connect6(ctx: &SockAddrContext) -> Result<i32, i32> {
    if !kernel::is_tcp_stream(ctx) {
        return Ok(ALLOW);
    }
    let original = OriginalDst {
        ip: kernel::user_ip6(ctx),
        port: kernel::user_port(ctx),
    };
    let Some(outbound_port) = redirect_port(ctx, &original)? else {
        return Ok(ALLOW);
    };
    // A dual-stack socket connecting to an IPv4 peer makes an IPv4 connection: keep it IPv4 so
    // it lands on the agent's 127.0.0.1 listener.
    let target = if is_ipv4_mapped(&original.ip) {
        LOCALHOST_V4_MAPPED
    } else {
        LOCALHOST_V6
    };
    kernel::set_user_ip6(ctx, target);
    kernel::set_user_port(ctx, outbound_port);
    Ok(ALLOW)
}

/// Decides whether this connect is captured. `Ok(Some(port))`: redirect it to the agent's
/// outbound `port` (its original destination is recorded). `Ok(None)`: leave it alone.
/// `Err(DENY)`: it must be captured but the agent's port is not configured, so refuse it rather
/// than let plaintext out.
fn redirect_port(ctx: &SockAddrContext, original: &OriginalDst) -> Result<Option<u16>, i32> {
    let netns_cookie = kernel::netns_cookie(ctx);
    if is_excluded(netns_cookie, original) {
        counters::tcp_connect(netns_cookie, false);
        return Ok(None);
    }
    let outbound_port = SETTINGS
        .get(0)
        .map(|settings| settings.outbound_port)
        .filter(|port| *port != 0)
        .ok_or(DENY)?;
    // If this insert fails the connection is still redirected: the agent then finds no original
    // destination and refuses it, which fails closed.
    let _ = SOCKET_DST.insert(kernel::socket_cookie(ctx), original, 0);
    counters::tcp_connect(netns_cookie, true);
    Ok(Some(outbound_port))
}

/// Destinations that are never captured: the pod itself (loopback, unspecified, its own IPs),
/// DNS, and the node-wide excluded ports and CIDRs.
fn is_excluded(netns_cookie: u64, dst: &OriginalDst) -> bool {
    is_local(&dst.ip)
        || dst.port == DNS_PORT
        || EXCL_PORTS.get_ptr(dst.port).is_some()
        || EXCL_CIDRS.get(Key::new(128, dst.ip)).is_some()
        || POD_IPS
            .get_ptr(PodIpKey {
                netns_cookie,
                ip: dst.ip,
            })
            .is_some()
}

/// Loopback (127.0.0.0/8, ::1) or unspecified (0.0.0.0, ::), which Linux connects to locally.
fn is_local(ip: &[u8; 16]) -> bool {
    if is_ipv4_mapped(ip) {
        return ip[12] == 127 || ip[12..] == [0, 0, 0, 0];
    }
    ip[..15] == [0; 15] && (ip[15] == 1 || ip[15] == 0)
}

fn is_ipv4_mapped(ip: &[u8; 16]) -> bool {
    ip[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
}
