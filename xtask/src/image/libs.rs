//! The shared objects a set of executables loads before `main`: their dynamic loader and,
//! recursively, every `DT_NEEDED` library, found where the loader inside the image will look.
//!
//! Not `ldd`: it reports where the *host's* loader finds each library, through
//! `/etc/ld.so.cache` and `LD_LIBRARY_PATH`, neither of which exists in the image, and it works
//! by running the binary's loader, so only for the host's architecture. Searching glibc's
//! built-in directories for each `DT_NEEDED` name resolves what the image's loader resolves, and
//! the test below checks that on the host this agrees with `ldd`.

use std::{
    collections::{BTreeSet, VecDeque},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::elf::{self, Arch, Elf};

/// A file that must be in the image for the executables to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedObject {
    /// Absolute path inside the image, where the loader looks for it.
    pub image_path: String,
    /// The host file with its content (read through symlinks).
    pub host_path: PathBuf,
}

#[derive(Debug)]
pub struct Closure {
    pub arch: Arch,
    /// The dynamic loader (`PT_INTERP`); `None` when every executable is static.
    pub loader: Option<SharedObject>,
    /// Every library needed directly or indirectly, each once, in the order they were found.
    pub libraries: Vec<SharedObject>,
}

/// glibc's built-in search path (`ld.so --help`, "system search path") when there is no
/// ld.so.cache: Debian's multiarch directories, then the lib64 ones of other distributions.
fn system_dirs(arch: Arch) -> Vec<String> {
    let tuple = arch.multiarch();
    [
        format!("/lib/{tuple}"),
        format!("/usr/lib/{tuple}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
    ]
    .into()
}

/// Resolves the loader and libraries of `executables` (all of one architecture and loader).
pub fn resolve(executables: &[&Path]) -> anyhow::Result<Closure> {
    let mut arch = None;
    let mut loader: Option<SharedObject> = None;
    // Names the loader will find already loaded: its own soname, then each library found.
    let mut provided = BTreeSet::new();
    let mut pending = VecDeque::new();
    for &exe in executables {
        let elf = checked(exe, &mut arch)?;
        if let Some(interpreter) = &elf.interpreter {
            match &loader {
                Some(known) if known.image_path == *interpreter => {}
                Some(known) => bail!(
                    "{} uses the loader {interpreter}, other executables {}",
                    exe.display(),
                    known.image_path
                ),
                None => {
                    let host_path = PathBuf::from(interpreter);
                    provided.extend(checked(&host_path, &mut arch)?.soname);
                    provided.extend(file_name(&host_path));
                    loader = Some(SharedObject {
                        image_path: interpreter.clone(),
                        host_path,
                    });
                }
            }
            pending.extend(elf.needed.into_iter().map(|name| (name, exe.to_owned())));
        }
    }
    let arch = arch.context("no executables to resolve")?;
    let dirs = system_dirs(arch);
    let mut libraries = Vec::new();
    while let Some((name, needed_by)) = pending.pop_front() {
        if provided.contains(&name) {
            continue;
        }
        let (host_path, elf) = find(&name, &dirs, arch).with_context(|| {
            format!(
                "{} needs {name}, which is in none of {dirs:?} (where the loader in the image \
                 looks)",
                needed_by.display()
            )
        })?;
        provided.insert(name);
        provided.extend(elf.soname);
        pending.extend(elf.needed.into_iter().map(|n| (n, host_path.clone())));
        libraries.push(SharedObject {
            image_path: host_path.to_string_lossy().into_owned(),
            host_path,
        });
    }
    Ok(Closure {
        arch,
        loader,
        libraries,
    })
}

/// The first `<dir>/<name>` that is an ELF file of `arch`; the loader skips other ones too.
fn find(name: &str, dirs: &[String], arch: Arch) -> anyhow::Result<(PathBuf, Elf)> {
    if name.contains('/') {
        bail!("DT_NEEDED {name} is a path; only library names are supported");
    }
    for dir in dirs {
        let candidate = Path::new(dir).join(name);
        if !candidate.is_file() {
            continue;
        }
        let Ok(elf) = elf::read(&candidate) else {
            continue;
        };
        if elf.arch == arch {
            refuse_search_path(&candidate, &elf)?;
            return Ok((candidate, elf));
        }
    }
    bail!("not found")
}

/// Reads `path` and checks that it is of the same architecture as the files before it.
fn checked(path: &Path, arch: &mut Option<Arch>) -> anyhow::Result<Elf> {
    let elf = elf::read(path)?;
    match arch {
        Some(known) if *known != elf.arch => bail!(
            "{} is built for {}, the other files for {}",
            path.display(),
            elf.arch.oci(),
            known.oci()
        ),
        _ => *arch = Some(elf.arch),
    }
    refuse_search_path(path, &elf)?;
    Ok(elf)
}

/// A `DT_RUNPATH` (often `$ORIGIN`-relative) points at directories that mean something else
/// once the file is in the image; nothing we ship uses one, so it is an error, not a guess.
fn refuse_search_path(path: &Path, elf: &Elf) -> anyhow::Result<()> {
    match &elf.runpath {
        Some(runpath) => bail!(
            "{} has a library search path ({runpath}), which images do not support",
            path.display()
        ),
        None => Ok(()),
    }
}

fn file_name(path: &Path) -> Option<String> {
    Some(path.file_name()?.to_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, fs, path::PathBuf, process::Command};

    use super::{file_name, resolve};

    /// `ldd`'s answer for `exe`: library name to the canonical file, and the loader's file.
    fn ldd(exe: &std::path::Path) -> (BTreeMap<String, PathBuf>, PathBuf) {
        let output = Command::new("ldd").arg(exe).output().expect("ldd runs");
        assert!(output.status.success(), "ldd failed: {output:?}");
        let (mut libraries, mut loader) = (BTreeMap::new(), None);
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "\t/lib64/ld-... (0x...)"
            let line = line.trim();
            let path_of = |text: &str| fs::canonicalize(text.split(" (").next().unwrap()).unwrap();
            if let Some((name, found)) = line.split_once(" => ") {
                libraries.insert(name.to_owned(), path_of(found));
            } else if line.starts_with('/') {
                loader = Some(path_of(line));
            }
        }
        (libraries, loader.expect("ldd names the loader"))
    }

    #[test]
    fn finds_the_same_loader_and_libraries_as_ldd_for_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let (expected_libraries, expected_loader) = ldd(&exe);

        let closure = resolve(&[&exe]).unwrap();
        let loader = closure
            .loader
            .expect("a dynamically linked executable has a loader");
        assert_eq!(
            fs::canonicalize(&loader.host_path).unwrap(),
            expected_loader
        );
        let found: BTreeMap<String, PathBuf> = closure
            .libraries
            .iter()
            .map(|lib| {
                assert_eq!(lib.image_path, lib.host_path.to_string_lossy());
                let name = file_name(&lib.host_path).unwrap();
                (name, fs::canonicalize(&lib.host_path).unwrap())
            })
            .collect();
        assert_eq!(found, expected_libraries, "ours (left) against ldd (right)");
        assert!(found.contains_key("libc.so.6"), "{found:?}");
    }

    #[test]
    fn a_static_file_needs_no_loader_and_no_libraries() {
        // The loader itself is a static ELF executable.
        let exe = std::env::current_exe().unwrap();
        let loader = resolve(&[&exe]).unwrap().loader.unwrap().host_path;
        let closure = resolve(&[&loader]).unwrap();
        assert_eq!((closure.loader, closure.libraries), (None, Vec::new()));
    }
}
