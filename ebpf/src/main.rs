//! Ferrule's eBPF programs. Built for `bpfel-unknown-none` by `node-agent/build.rs`.
//!
//! Entry points stay thin: each calls a `try_*` function and maps its result to the kernel's
//! verdict, so the logic reads as ordinary Rust.
// `no_std`/`no_main` only for the BPF target: on the host this stays a normal (empty) binary, so
// `cargo clippy/test --workspace` can type-check it even though feature unification there makes
// `ferrule-ebpf-common` pull in aya and std, which would clash with our panic handler.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod connect4;
mod kernel;

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

/// `cgroup/connect4`: runs on every IPv4 `connect()` in an attached cgroup. For now it only
/// counts TCP connects per network namespace and always allows them.
#[cgroup_sock_addr(connect4)]
pub fn connect4_capture(ctx: SockAddrContext) -> i32 {
    match connect4::try_connect4_capture(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

/// The kernel refuses GPL-only helpers to programs without a GPL-compatible license string.
/// Ferrule is Apache-2.0 and uses no GPL-only helper, so say exactly that.
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
