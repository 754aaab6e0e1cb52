//! Taking Ferrule off a node for good (`ferrule-agent uninstall`), and the running agent's part
//! in it ([`Signal`]). A stopped agent leaves capture pinned on purpose, so that strict pods fail
//! closed until the next agent; uninstalling is the one way to take it away, and leaves the
//! pods running as plain pods.

mod command;
mod if_removed;
mod report;
mod signal;
mod steps;

pub use command::{Args, main};
pub use report::{Line, NOTHING_LEFT, Outcome, Report, UNINSTALLED};
pub use signal::Signal;
pub use steps::{Targets, run};
