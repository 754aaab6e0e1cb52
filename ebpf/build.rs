//! The bpf-linker binary is an undeclared input of this crate: rebuild when it changes (as
//! aya-template does). A missing bpf-linker is reported by node-agent's build script, which
//! knows how to explain it, so here it is simply not tracked.

use std::{env, path::PathBuf};

fn main() {
    if let Some(linker) = find_on_path("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
