//! `cargo xtask image`: OCI image archives of the agent and the control plane, assembled from
//! our binaries (without their debug info) and exactly the shared objects they load (the dynamic
//! loader and the `DT_NEEDED` closure), a minimal /etc/passwd and /etc/group, and /tmp: no base
//! image, no registry, no network. Each archive is one deterministic gzip'ed layer in an OCI
//! layout that `ctr images import`, `kind load image-archive` and `docker load` all accept.

mod archive;
mod digest;
mod elf;
mod layer;
mod libs;
mod oci;
mod reference;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use self::{
    layer::{Rootfs, Source},
    oci::Image,
    reference::Reference,
};
use crate::cmd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Release,
    Dev,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cargo profile of the binaries: `release` for images to ship; `dev` packages the debug
    /// binaries that `cargo build` made (the tests use it, to avoid a second full build).
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    pub profile: Profile,
    /// Image tag.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
    /// Registry put in front of the names, host[:port][/path], e.g. `localhost:5000` for
    /// `localhost:5000/ferrule/agent:<tag>`. Without it the names are `ferrule/agent:<tag>`.
    #[arg(long)]
    pub registry: Option<String>,
    /// Directory the archives are written to (`agent.tar`, `control-plane.tar`)
    /// [default: target/images in the workspace].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One image: `ferrule/<name>`, carrying `binaries` in /usr/local/bin; the first is the
/// entrypoint.
struct Spec {
    name: &'static str,
    binaries: &'static [&'static str],
}

const IMAGES: [Spec; 2] = [
    Spec {
        name: "agent",
        // ferrule-cni is in the agent's image: the agent copies it into the host's CNI bin dir.
        binaries: &["ferrule-agent", "ferrule-cni", "ferrule"],
    },
    Spec {
        name: "control-plane",
        binaries: &["ferrule-control-plane", "ferrule"],
    },
];

/// Enough for tools that look up uid 0 and `nobody` (for `runAsUser: 65534`).
const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

pub fn run(args: Args) -> anyhow::Result<()> {
    // Check the names before spending minutes on a build.
    let references = IMAGES
        .iter()
        .map(|spec| {
            let name = format!("ferrule/{}", spec.name);
            Reference::new(args.registry.as_deref(), &name, &args.tag)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = args
        .out
        .unwrap_or_else(|| cmd::workspace_root().join("target/images"));
    let built = build(args.profile)?;
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let stripped = tempfile::Builder::new()
        .prefix(".stripped-")
        .tempdir_in(&out)?;
    let executables = strip_debug_info(&built, stripped.path())?;
    for (spec, reference) in IMAGES.iter().zip(&references) {
        let image = assemble(spec, &executables)
            .with_context(|| format!("assembling the image {reference}"))?;
        let path = out.join(format!("{}.tar", spec.name));
        archive::write(&path, reference, &image)?;
        let megabytes = |bytes: u64| bytes as f64 / 1e6;
        println!(
            "{reference}  {}  {:.1} MB (layer {:.1} MB uncompressed)  {}",
            image.manifest_descriptor.digest,
            megabytes(fs::metadata(&path)?.len()),
            megabytes(image.layer.uncompressed_size),
            path.display()
        );
    }
    Ok(())
}

/// Builds the binaries of all images and returns where cargo put each (by binary name).
fn build(profile: Profile) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let profile = match profile {
        Profile::Release => "release",
        Profile::Dev => "dev",
    };
    let mut build = cmd::cargo();
    build.args([
        "build",
        "--profile",
        profile,
        "--message-format=json-render-diagnostics",
    ]);
    let mut binaries: Vec<&str> = IMAGES
        .iter()
        .flat_map(|spec| spec.binaries)
        .copied()
        .collect();
    binaries.sort_unstable();
    binaries.dedup();
    for binary in binaries {
        build.args(["--bin", binary]);
    }
    let messages = cmd::stdout_showing_stderr(&mut build)?;
    let mut executables = BTreeMap::new();
    for line in messages.lines() {
        let message: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("cargo printed a line that is not JSON: {line}"))?;
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(path)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            executables.insert(name.to_owned(), PathBuf::from(path));
        }
    }
    Ok(executables)
}

/// Copies of the executables without debug info (`objcopy --strip-debug`; the symbols stay, so
/// backtraces still name functions). The release profile keeps debug info for profiling on the
/// build host, about three quarters of each binary, which a container does not need.
fn strip_debug_info(
    executables: &BTreeMap<String, PathBuf>,
    dir: &Path,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut stripped = BTreeMap::new();
    for (name, path) in executables {
        let copy = dir.join(name);
        cmd::stdout(
            Command::new("objcopy")
                .arg("--strip-debug")
                .args([path, &copy]),
        )
        .context("objcopy (binutils) strips the debug info from the binaries")?;
        stripped.insert(name.clone(), copy);
    }
    Ok(stripped)
}

fn assemble(spec: &Spec, executables: &BTreeMap<String, PathBuf>) -> anyhow::Result<Image> {
    let mut rootfs = Rootfs::default();
    rootfs.file("/etc/passwd", 0o644, Source::Bytes(PASSWD.into()))?;
    rootfs.file("/etc/group", 0o644, Source::Bytes(GROUP.into()))?;
    rootfs.dir("/tmp", 0o1777)?;
    let mut paths: Vec<&Path> = Vec::new();
    for binary in spec.binaries {
        let path = executables
            .get(*binary)
            .with_context(|| format!("cargo built no executable {binary}"))?;
        rootfs.file(
            &format!("/usr/local/bin/{binary}"),
            0o755,
            Source::Host(path.clone()),
        )?;
        paths.push(path);
    }
    let closure = libs::resolve(&paths)?;
    if let Some(loader) = closure.loader {
        // The kernel executes the loader, so it needs the x bit; libraries are only mapped.
        rootfs.file(&loader.image_path, 0o755, Source::Host(loader.host_path))?;
    }
    for library in closure.libraries {
        rootfs.file(&library.image_path, 0o644, Source::Host(library.host_path))?;
    }
    let entrypoint = format!("/usr/local/bin/{}", spec.binaries[0]);
    Image::new(rootfs.write()?, closure.arch.oci(), &entrypoint)
}
