//! File operations of the installer: atomic replacement with a chosen mode, the binary copy,
//! and the runtime's view of the configuration directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Extensions libcni reads network configurations from.
const CONFIG_EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct Error {
    what: &'static str,
    path: PathBuf,
    source: io::Error,
}

fn context<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Replaces `path` with `contents` atomically (temporary file beside it, fsync, rename), so a
/// runtime reading it sees the old or the new file, never half of one.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // The extension keeps the runtime from reading the temporary file as a configuration.
    let temp = path.with_file_name(format!(".{name}.{}.ferrule-tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        // An existing temporary file keeps its old mode through open().
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written.map_err(context("writing", path))?;
    if let Some(dir) = path.parent() {
        // The rename is durable once the directory is.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Copies the plugin binary to `dest` (mode 0755) unless it is already there. `thorough`
/// compares contents; otherwise an existing file of the same size counts as current.
pub fn install_binary(source: &Path, dest: &Path, thorough: bool) -> Result<bool, Error> {
    let source_len = fs::metadata(source)
        .map_err(context("reading", source))?
        .len();
    let current = match fs::metadata(dest) {
        Ok(meta) if meta.len() == source_len && meta.permissions().mode() & 0o777 == 0o755 => {
            !thorough || same_contents(source, dest)?
        }
        _ => false,
    };
    if current {
        return Ok(false);
    }
    let contents = fs::read(source).map_err(context("reading", source))?;
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(context("creating", dir))?;
    }
    replace(dest, &contents, 0o755)?;
    Ok(true)
}

fn same_contents(a: &Path, b: &Path) -> Result<bool, Error> {
    let a = fs::read(a).map_err(context("reading", a))?;
    Ok(fs::read(b).map_err(context("reading", b))? == a)
}

/// Writes `contents` with `mode` unless the file already holds exactly that.
pub fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> Result<bool, Error> {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o777 == mode
        && fs::read(path).is_ok_and(|old| old == contents)
    {
        return Ok(false);
    }
    replace(path, contents, mode)?;
    Ok(true)
}

/// Removes `path`; a file that is already gone is fine.
pub fn remove(path: &Path) -> Result<bool, Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(context("removing", path)(e)),
    }
}

/// The file's permission bits, 0644 if it cannot be read.
pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777)
}

pub fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(context("reading", path))
}

/// The network configuration files in `dir` in the order libcni sorts them (byte order of
/// the names), skipping ours (`skip`). A missing directory has none.
pub fn config_files(dir: &Path, skip: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(context("listing", dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(context("listing", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_config = Path::new(&name)
            .extension()
            .is_some_and(|ext| CONFIG_EXTENSIONS.iter().any(|c| ext == *c));
        // Follow symlinks, as the runtime does; skip directories.
        let is_file = fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
        if is_config && is_file && !skip(&name) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_sets_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        replace(&path, b"one", 0o600).unwrap();
        replace(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["k"]);
    }

    #[test]
    fn config_files_are_sorted_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "20-b.conf",
            "10-a.conflist",
            "10-a.conf",
            "05-x.json",
            "99.txt",
            "ours.conf",
        ] {
            fs::write(dir.path().join(name), "{}").unwrap();
        }
        fs::create_dir(dir.path().join("00-dir.conf")).unwrap();
        let files = config_files(dir.path(), |n| n.starts_with("ours")).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["05-x.json", "10-a.conf", "10-a.conflist", "20-b.conf"]
        );
        assert!(
            config_files(&dir.path().join("missing"), |_| false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn install_binary_copies_once_with_mode_0755() {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("src"), dir.path().join("dest"));
        fs::write(&source, b"\x7fELF...").unwrap();
        assert!(install_binary(&source, &dest, true).unwrap());
        assert_eq!(mode_of(&dest), 0o755);
        assert!(
            !install_binary(&source, &dest, true).unwrap(),
            "already current"
        );
        fs::write(&dest, b"\x7fELF,,,").unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            !install_binary(&source, &dest, false).unwrap(),
            "same size is enough"
        );
        assert!(
            install_binary(&source, &dest, true).unwrap(),
            "contents differ"
        );
        assert_eq!(fs::read(&dest).unwrap(), b"\x7fELF...");
    }
}
