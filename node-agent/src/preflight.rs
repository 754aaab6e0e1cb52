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

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but needs attention soon, or could not be fully checked.
    Warn,
    /// The agent will not work until this is fixed.
    Fail,
}

/// One check's result: what was found, and for a warning or failure, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            hint: Some(hint.into()),
            ..Self::ok(name, detail)
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            hint: Some(hint.into()),
            ..Self::ok(name, detail)
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status != Status::Fail
    }
}

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
