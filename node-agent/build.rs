//! Compiles the eBPF programs in `../ebpf` for the BPF target and leaves the object at
//! `$OUT_DIR/ferrule-ebpf`, where `src/ebpf.rs` embeds it.
//!
//! aya-build runs a nested `cargo +nightly build -Z build-std=core --target bpfel-unknown-none`
//! linked by bpf-linker. When a piece of that toolchain is missing the nested build fails with a
//! wall of text, so check for each piece first and say how to get it.

use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use aya_build::{Package, Toolchain};

const EBPF_PACKAGE: &str = "ferrule-ebpf";
const SKIP_ENV: &str = "AYA_BUILD_SKIP";
const FIX: &str = "`cargo xtask setup` installs everything the build needs";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed={SKIP_ENV}");
    if skip_requested() {
        return write_empty_object();
    }
    check_toolchain()?;
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf");
    let root_dir = root_dir.to_str().context("eBPF crate path is not UTF-8")?;
    let package = Package {
        name: EBPF_PACKAGE,
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
        .context("building the eBPF programs (see the cargo:warning lines above)")
}

/// `AYA_BUILD_SKIP=1` (e.g. for IDE analysis) embeds an empty object, which `ebpf::load`
/// rejects at run time with a clear error instead of failing the whole build.
fn skip_requested() -> bool {
    env::var(SKIP_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn write_empty_object() -> anyhow::Result<()> {
    println!("cargo:warning={SKIP_ENV} is set: embedding an empty eBPF object");
    let out = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    fs::write(out.join(EBPF_PACKAGE), []).context("writing the empty eBPF object")
}

fn check_toolchain() -> anyhow::Result<()> {
    if find_on_path("rustup").is_none() {
        bail!(
            "rustup not found on PATH: the eBPF programs are built with its nightly toolchain; \
             install rustup (https://rustup.rs), then run `cargo xtask setup`"
        );
    }
    let sysroot = nightly_sysroot().with_context(|| {
        format!("the nightly toolchain is missing (`rustup toolchain install nightly`); {FIX}")
    })?;
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        bail!(
            "rust-src is missing for nightly (`rustup component add rust-src --toolchain nightly`); {FIX}"
        );
    }
    if find_on_path("bpf-linker").is_none() {
        bail!("bpf-linker not found on PATH (it links the eBPF object); {FIX}");
    }
    Ok(())
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .context("running `rustup run nightly rustc`")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn find_on_path(program: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program.as_ref()))
        .find(|candidate| candidate.is_file())
}
