//! `cargo xtask setup`: installs what the project needs on a fresh Debian 12 machine. Every step
//! checks first and acts only on what is missing, so a second run takes a moment.

use std::{collections::BTreeSet, process::Command};

use anyhow::{Context as _, bail};

use crate::cmd;

/// Debian packages: LLVM for bpf-linker, protoc for tonic, SoftHSM2 + OpenSC for the PKCS#11
/// signer, capture tools and iproute2 for the netns tests, etcd for the HA store, promtool,
/// nginx as a gateway outside the mesh that checks the published CRLs, the reference CNI
/// plugins (bridge, host-local, loopback in /usr/lib/cni) that ferrule-cni's tests chain after,
/// the way a cluster's primary plugin runs before it, and containerd and runc for the test that
/// imports and runs the images of `cargo xtask image` (xtask/tests/image.rs), and g++ for
/// libFuzzer (C++), which the fuzz targets of `cargo xtask fuzz` link.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "protobuf-compiler",
    // The well-known types (descriptor.proto) the etcd API protos import.
    "libprotobuf-dev",
    "softhsm2",
    "opensc",
    "tshark",
    "tcpdump",
    "etcd-server",
    "etcd-client",
    "iproute2",
    "openssl",
    "curl",
    "python3",
    "prometheus",
    "nginx-light",
    "containernetworking-plugins",
    "containerd",
    "runc",
    "g++",
];

/// bpf-linker links against this LLVM (package llvm-22-dev); the two must match.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "^0.13";
/// Builds with the stable toolchain `cargo xtask` runs on; the fuzz targets need nightly.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn run() -> anyhow::Result<()> {
    apt_packages()?;
    rust_toolchains()?;
    bpf_linker()?;
    cargo_fuzz()
}

fn report(state: &str, item: &str) {
    println!("{state:>9}  {item}");
}

fn apt_packages() -> anyhow::Result<()> {
    let missing = missing_apt_packages()?;
    for package in APT_PACKAGES.iter().filter(|p| !missing.contains(**p)) {
        report("present", &format!("apt {package}"));
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !cmd::is_root()? {
        bail!("apt packages missing ({missing:?}): run `cargo xtask setup` as root");
    }
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "--yes", "--no-install-recommends"])
            .args(&missing)
            // tshark asks whether non-root users may capture; take the default, don't prompt.
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still_missing = missing_apt_packages()?;
    if !still_missing.is_empty() {
        bail!("apt-get install succeeded but {still_missing:?} are still not installed");
    }
    for package in &missing {
        report("installed", &format!("apt {package}"));
    }
    Ok(())
}

/// Packages from `APT_PACKAGES` that dpkg does not report as "install ok installed".
fn missing_apt_packages() -> anyhow::Result<BTreeSet<String>> {
    // dpkg-query exits 1 when some package is unknown to it, so read stdout whatever the status.
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Package} ${Status}\\n"])
        .args(APT_PACKAGES)
        .output()
        .context("running dpkg-query (is this Debian?)")?;
    let installed: BTreeSet<&str> = std::str::from_utf8(&output.stdout)?
        .lines()
        .filter_map(|line| line.strip_suffix(" install ok installed"))
        .collect();
    Ok(APT_PACKAGES
        .iter()
        .filter(|p| !installed.contains(**p))
        .map(|p| (*p).to_owned())
        .collect())
}

fn rust_toolchains() -> anyhow::Result<()> {
    if cmd::on_path("rustup").is_none() {
        bail!("rustup not found on PATH: install it (https://rustup.rs) and rerun");
    }
    // fmt and clippy run in CI on the toolchain that runs this xtask (stable).
    for component in ["rustfmt", "clippy"] {
        ensure_component(component, None)?;
    }
    let toolchains = cmd::stdout(Command::new("rustup").args(["toolchain", "list"]))?;
    if toolchains.lines().any(|l| l.starts_with("nightly-")) {
        report("present", "rustup toolchain nightly");
    } else {
        let args = ["toolchain", "install", "nightly", "--profile", "minimal"];
        cmd::run(
            Command::new("rustup")
                .args(args)
                .args(["--component", "rust-src"]),
        )?;
        report("installed", "rustup toolchain nightly");
    }
    // The eBPF crate is built with -Z build-std=core, which needs core's source.
    ensure_component("rust-src", Some("nightly"))
}

fn ensure_component(component: &str, toolchain: Option<&str>) -> anyhow::Result<()> {
    let toolchain_args: Vec<&str> = toolchain
        .map(|t| vec!["--toolchain", t])
        .unwrap_or_default();
    let item = format!(
        "rustup component {component} ({})",
        toolchain.unwrap_or("current")
    );
    let installed = cmd::stdout(
        Command::new("rustup")
            .args(["component", "list", "--installed"])
            .args(&toolchain_args),
    )?;
    // Lines are "rust-src" or "clippy-x86_64-unknown-linux-gnu".
    if installed
        .lines()
        .any(|l| l == component || l.starts_with(&format!("{component}-")))
    {
        report("present", &item);
        return Ok(());
    }
    cmd::run(
        Command::new("rustup")
            .args(["component", "add", component])
            .args(&toolchain_args),
    )?;
    report("installed", &item);
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    if let Some(version) = bpf_linker_version() {
        report("present", &version);
        return Ok(());
    }
    cmd::run(
        cmd::cargo()
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )?;
    let version = bpf_linker_version().context(
        "bpf-linker was installed but is not on PATH: add cargo's bin directory \
         (usually ~/.cargo/bin) to PATH",
    )?;
    report("installed", &version);
    Ok(())
}

/// e.g. "bpf-linker 0.13.0", or `None` when it is not installed (or broken).
fn bpf_linker_version() -> Option<String> {
    cmd::on_path("bpf-linker")?;
    let version = cmd::stdout(Command::new("bpf-linker").arg("--version")).ok()?;
    Some(version.trim().to_owned())
}

fn cargo_fuzz() -> anyhow::Result<()> {
    if let Some(version) = cargo_fuzz_version() {
        report("present", &version);
        return Ok(());
    }
    cmd::run(cmd::cargo().args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))?;
    let version = cargo_fuzz_version().context(
        "cargo-fuzz was installed but is not on PATH: add cargo's bin directory \
         (usually ~/.cargo/bin) to PATH",
    )?;
    report("installed", &version);
    Ok(())
}

/// e.g. "cargo-fuzz 0.13.2", or `None` when it is not installed (or broken).
fn cargo_fuzz_version() -> Option<String> {
    cmd::on_path("cargo-fuzz")?;
    let version = cmd::stdout(Command::new("cargo-fuzz").arg("--version")).ok()?;
    Some(version.trim().to_owned())
}
