//! The program version ([`ferrule_ebpf_common::PROGRAM_VERSION`]), which the agent's loader
//! sets to the version it loads. Every program reads it, so it lives in the programs' read-only
//! data: programs loaded as different versions are different programs, and `bpftool map dump`
//! of a program's `.rodata` shows which version it is.

use crate::kernel;

#[allow(
    unsafe_code,
    reason = "the loader finds the global by this exact symbol name"
)]
#[unsafe(no_mangle)]
static PROGRAM_VERSION: u32 = ferrule_ebpf_common::PROGRAM_VERSION;

/// Reads the version. Volatile: a plain read of an immutable static would be folded into a
/// constant, leaving the programs without a reference to the loader's value.
pub(crate) fn program_version() -> u32 {
    kernel::read_volatile_u32(&PROGRAM_VERSION)
}
