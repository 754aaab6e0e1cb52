//! The agent's lifecycle on real nodes: upgrades that lose no connection, a drain that is
//! bounded, repeated restarts that leak nothing, and an uninstall that leaves plain pods.

#[path = "lifecycle/upgrade.rs"]
mod upgrade;
