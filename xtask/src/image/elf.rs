//! What the dynamic loader reads from an ELF file before it runs it: the interpreter
//! (`PT_INTERP`), the libraries it needs (`DT_NEEDED`), its own `DT_SONAME` and any search path
//! baked in (`DT_RUNPATH`/`DT_RPATH`), plus the machine for the image's platform.

use std::{fs::File, path::Path};

use anyhow::{Context as _, bail};
use object::{
    Endianness, FileKind, ReadCache, ReadRef, elf,
    read::elf::{FileHeader, ProgramHeader as _},
};

/// The CPU an ELF file is built for, named as OCI platforms and Debian's multiarch paths name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// `architecture` of an OCI platform (GOARCH).
    pub fn oci(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// The multiarch tuple of glibc's library directories (`/lib/<tuple>`).
    pub fn multiarch(self) -> &'static str {
        match self {
            Self::Amd64 => "x86_64-linux-gnu",
            Self::Arm64 => "aarch64-linux-gnu",
        }
    }
}

#[derive(Debug)]
pub struct Elf {
    pub arch: Arch,
    /// Absolute path of the dynamic loader; `None` for a static executable.
    pub interpreter: Option<String>,
    pub soname: Option<String>,
    pub needed: Vec<String>,
    /// `DT_RUNPATH`, or `DT_RPATH` when there is no `DT_RUNPATH`, as written (may hold `$ORIGIN`).
    pub runpath: Option<String>,
}

/// Reads the dynamic-linking facts of the ELF file at `path` (only the headers and the dynamic
/// section are read, not the whole file).
pub fn read(path: &Path) -> anyhow::Result<Elf> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let cache = ReadCache::new(file);
    let parsed = match FileKind::parse(&cache) {
        Ok(FileKind::Elf64) => parse::<elf::FileHeader64<Endianness>, _>(&cache),
        Ok(kind) => bail!("{} is not a 64-bit ELF file ({kind:?})", path.display()),
        Err(error) => Err(error.into()),
    };
    parsed.with_context(|| format!("reading ELF headers of {}", path.display()))
}

fn parse<'data, H, R>(data: R) -> anyhow::Result<Elf>
where
    H: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let header = H::parse(data)?;
    let endian = header.endian()?;
    let arch = match header.e_machine(endian) {
        elf::EM_X86_64 => Arch::Amd64,
        elf::EM_AARCH64 => Arch::Arm64,
        other => bail!("ELF machine {other} is not supported (only x86_64 and aarch64)"),
    };
    let mut interpreter = None;
    for segment in header.program_headers(endian, data)? {
        if let Some(path) = segment.interpreter(endian, data)? {
            interpreter = Some(utf8(path)?);
        }
    }
    let dynamic = header.sections(endian, data)?.dynamic_table(endian, data)?;
    let (mut soname, mut needed, mut runpath, mut rpath) = (None, Vec::new(), None, None);
    for entry in &dynamic {
        let slot = match entry.tag {
            elf::DT_NEEDED => {
                needed.push(utf8(dynamic.string(entry)?)?);
                continue;
            }
            elf::DT_SONAME => &mut soname,
            elf::DT_RUNPATH => &mut runpath,
            elf::DT_RPATH => &mut rpath,
            _ => continue,
        };
        *slot = Some(utf8(dynamic.string(entry)?)?);
    }
    Ok(Elf {
        arch,
        interpreter,
        soname,
        needed,
        runpath: runpath.or(rpath),
    })
}

fn utf8(bytes: &[u8]) -> anyhow::Result<String> {
    String::from_utf8(bytes.to_vec()).context("a dynamic-linking string is not UTF-8")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::read;

    #[test]
    fn reads_interpreter_needed_libraries_and_soname_of_glibc_objects() {
        // This test binary is a dynamically linked executable of the host's glibc.
        let exe = read(&std::env::current_exe().unwrap()).unwrap();
        let interpreter = exe
            .interpreter
            .as_deref()
            .expect("the test binary has PT_INTERP");
        assert!(interpreter.starts_with('/'), "interpreter {interpreter}");
        assert!(exe.needed.iter().any(|n| n == "libc.so.6"), "{exe:?}");
        assert_eq!(exe.soname, None, "an executable has no soname: {exe:?}");

        let loader = read(Path::new(interpreter)).unwrap();
        assert_eq!(loader.arch, exe.arch);
        assert_eq!(loader.interpreter, None, "{loader:?}");
        let soname = loader.soname.expect("the loader has a soname");
        assert!(soname.starts_with("ld-linux"), "loader soname {soname}");
    }

    #[test]
    fn a_file_that_is_not_elf_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script.sh");
        std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
        let error = format!("{:#}", read(&path).unwrap_err());
        assert!(error.contains("script.sh"), "{error}");
    }
}
