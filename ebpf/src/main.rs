//! Ferrule's eBPF programs. Built for `bpfel-unknown-none` by `node-agent/build.rs`.
//!
//! Entry points stay thin: each reads the program version (see `version`) and calls a `try_*`
//! function, mapping its result to the kernel's verdict, so the logic reads as ordinary Rust.
//! All programs are attached to pod cgroups only.
// `no_std`/`no_main` only for the BPF target: on the host this stays a normal (empty) binary, so
// `cargo clippy/test --workspace` can type-check it even though feature unification there makes
// `ferrule-ebpf-common` pull in aya and std, which would clash with our panic handler.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod connect;
mod counters;
mod ingress;
mod kernel;
mod maps;
mod sock_ops;
mod version;

use aya_ebpf::{
    macros::{cgroup_skb, cgroup_sock_addr, sock_ops},
    programs::{SkBuffContext, SockAddrContext, SockOpsContext},
};

/// `cgroup/connect4`: redirects captured IPv4 TCP connects to the agent.
#[cgroup_sock_addr(connect4)]
pub fn connect4_capture(ctx: SockAddrContext) -> i32 {
    let _version = version::program_version();
    match connect::try_connect4(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

/// `cgroup/connect6`: redirects captured IPv6 (and v4-mapped) TCP connects to the agent.
#[cgroup_sock_addr(connect6)]
pub fn connect6_capture(ctx: SockAddrContext) -> i32 {
    let _version = version::program_version();
    match connect::try_connect6(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

/// `sockops`: binds a redirected socket's original destination to its local address.
#[sock_ops]
pub fn sock_ops_capture(ctx: SockOpsContext) -> u32 {
    let _version = version::program_version();
    match sock_ops::try_sock_ops(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

/// `cgroup_skb/ingress`: enforces the pod's inbound mode (strict drops, permissive counts).
#[cgroup_skb(ingress)]
pub fn ingress_guard(ctx: SkBuffContext) -> i32 {
    let _version = version::program_version();
    match ingress::try_ingress(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

/// The kernel refuses GPL-only helpers to programs without a GPL-compatible license string.
/// Ferrule is Apache-2.0 and uses no GPL-only helper (socket and netns cookies, sk_fullsock,
/// skb_load_bytes, sock_ops_cb_flags_set are all available to any license), so say exactly that.
#[allow(
    unsafe_code,
    reason = "the loader finds the license by this exact symbol and section"
)]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 11] = *b"Apache-2.0\0";

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that can reach a panic, so this is never executed.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
