//! Pre-flight checks: does this node give the agent what it needs? A kernel that loads the
//! capture programs, a BPF filesystem for the pins, a cgroup v2 hierarchy to attach to, and the
//! privileges for `bpf()`, `mount()` and `setns()`. `ferrule check` runs them before an agent is
//! deployed; each result says what was found and, when something is missing, how to fix it.
//!
//! The checks look at the calling process: run them with the privileges the agent will have.

mod kernel;
mod mounts;
mod privileges;

use std::path::Path;

pub use ferrule_config::check::{Check, Status};

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
