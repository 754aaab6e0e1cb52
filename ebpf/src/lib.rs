//! Empty library target: it lets `ferrule-node-agent` list this crate as a build-dependency, so
//! cargo re-runs the agent's build script (which compiles the programs in `main.rs` for the BPF
//! target) whenever this crate or its dependencies change.
#![no_std]
