//! Pre-flight checks: does this node give the agent what it needs? A kernel that loads the
//! capture programs, a BPF filesystem for the pins, a cgroup v2 hierarchy to attach to, and the
//! privileges for `bpf()`, `mount()` and `setns()`. `ferrule check` runs them before an agent is
//! deployed; each result says what was found and, when something is missing, how to fix it.
//!
//! A crate of its own so the agent and the CLI share them without the CLI linking the agent:
//! the filesystem lookups the checks make ([`bpffs`], [`cgroup`]) are the ones the agent uses to
//! pin and attach, and the eBPF probes use aya directly.
//!
//! The checks look at the calling process: run them with the privileges the agent will have.
#![forbid(unsafe_code)]

pub mod bpffs;
pub mod cgroup;
mod kernel;
mod mounts;
mod privileges;

use std::path::Path;

pub use ferrule_config::check::{Check, Status};

/// The agent's default `capture.pin_dir`: where it pins its programs and maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ferrule";
/// The environment override of `capture.pin_dir` (the agent's, and `ferrule check --pin-dir`'s).
pub const ENV_PIN_DIR: &str = "FERRULE_PIN_DIR";

/// Every node check, in the order to fix them: kernel, eBPF support, bpffs for `pin_dir` (the
/// agent's `capture.pin_dir`), cgroup v2, privileges.
pub fn node_checks(pin_dir: &Path) -> Vec<Check> {
    vec![
        kernel::version(),
        kernel::programs(),
        mounts::bpffs(pin_dir),
        mounts::cgroup2(),
        privileges::check(),
    ]
}
