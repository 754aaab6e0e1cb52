//! The image's single filesystem layer: a gzip'ed tar built so that the same inputs always give
//! the same bytes (entries sorted by path, parents first, owner 0:0, mtime 0, fixed modes), hence
//! the same digest on every run and every machine with the same binaries and libraries.

use std::{
    collections::BTreeMap,
    fs::File,
    io,
    path::{Component, Path, PathBuf},
};

use anyhow::{Context as _, bail};
use flate2::{Compression, write::GzEncoder};

use super::digest::{Digest, HashingWriter};

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A host file, read through symlinks.
    Host(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, source: Source },
}

/// A filesystem tree to be written as a layer, keyed by path relative to `/`.
#[derive(Debug, Default)]
pub struct Rootfs {
    nodes: BTreeMap<String, Node>,
}

/// A written layer: the gzip'ed tar (the blob), its digest, and the digest of the uncompressed
/// tar (the `diff_id` the image config lists) and its size.
#[derive(Debug)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub digest: Digest,
    pub diff_id: Digest,
    pub uncompressed_size: u64,
}

impl Rootfs {
    /// Adds the directory `path` (absolute in the image) and its missing parents.
    pub fn dir(&mut self, path: &str, mode: u32) -> anyhow::Result<()> {
        let key = self.parents(path)?;
        self.insert(key, Node::Dir { mode })
    }

    /// Adds the file `path` (absolute in the image) and its missing parent directories.
    pub fn file(&mut self, path: &str, mode: u32, source: Source) -> anyhow::Result<()> {
        let key = self.parents(path)?;
        self.insert(key, Node::File { mode, source })
    }

    /// The key of `path`, once each of its parent directories is in the tree (mode 0755).
    fn parents(&mut self, path: &str) -> anyhow::Result<String> {
        let mut parts = Vec::new();
        for component in Path::new(path).components() {
            match component {
                Component::RootDir => {}
                Component::Normal(part) => parts.push(part.to_str().context("non-UTF-8 path")?),
                _ => bail!("image path {path} must be absolute and plain (no `.` or `..`)"),
            }
        }
        if !path.starts_with('/') || parts.is_empty() {
            bail!("image path {path:?} must be absolute and not `/`");
        }
        for end in 1..parts.len() {
            let parent = parts[..end].join("/");
            match self.nodes.get(&parent) {
                Some(Node::Dir { .. }) => {}
                Some(Node::File { .. }) => bail!("{path}: /{parent} is a file in the image"),
                None => {
                    self.nodes.insert(parent, Node::Dir { mode: 0o755 });
                }
            }
        }
        Ok(parts.join("/"))
    }

    fn insert(&mut self, key: String, node: Node) -> anyhow::Result<()> {
        match self.nodes.get(&key) {
            Some(existing) if *existing != node => {
                bail!("/{key} is added twice, as {existing:?} and as {node:?}")
            }
            _ => {
                self.nodes.insert(key, node);
                Ok(())
            }
        }
    }

    /// Writes the tree as a gzip'ed tar in memory (the layer of our images is tens of MB).
    pub fn write(&self) -> anyhow::Result<Layer> {
        let gzip = GzEncoder::new(HashingWriter::new(Vec::new()), Compression::default());
        let mut tar = tar::Builder::new(HashingWriter::new(gzip));
        // BTreeMap order: a directory sorts before everything below it.
        for (path, node) in &self.nodes {
            append(&mut tar, path, node).with_context(|| format!("adding /{path} to the layer"))?;
        }
        let (gzip, diff_id, uncompressed_size) = tar.into_inner()?.finish();
        let (blob, digest, _) = gzip.finish()?.finish();
        Ok(Layer {
            blob,
            digest,
            diff_id,
            uncompressed_size,
        })
    }
}

fn append<W: io::Write>(tar: &mut tar::Builder<W>, path: &str, node: &Node) -> anyhow::Result<()> {
    match node {
        Node::Dir { mode } => {
            let mut header = header(tar::EntryType::Directory, *mode, 0);
            tar.append_data(&mut header, format!("{path}/"), io::empty())?;
        }
        Node::File {
            mode,
            source: Source::Bytes(bytes),
        } => {
            let mut header = header(tar::EntryType::Regular, *mode, bytes.len() as u64);
            tar.append_data(&mut header, path, bytes.as_slice())?;
        }
        Node::File {
            mode,
            source: Source::Host(host),
        } => {
            let file = File::open(host).with_context(|| format!("opening {}", host.display()))?;
            let mut header = header(tar::EntryType::Regular, *mode, file.metadata()?.len());
            tar.append_data(&mut header, path, file)?;
        }
    }
    Ok(())
}

/// A tar header with nothing taken from the host: owner 0:0, mtime 0 (the epoch).
pub fn header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use flate2::read::GzDecoder;

    use super::{Rootfs, Source};
    use crate::image::digest::Digest;

    #[test]
    fn layer_lists_parents_first_sorted_with_owner_root_and_mtime_zero() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("tool");
        std::fs::write(&host, b"\x7fELF pretend").unwrap();
        let mut rootfs = Rootfs::default();
        rootfs
            .file("/usr/local/bin/tool", 0o755, Source::Host(host))
            .unwrap();
        rootfs
            .file(
                "/etc/passwd",
                0o644,
                Source::Bytes(b"root:x:0:0::/:/x\n".to_vec()),
            )
            .unwrap();
        rootfs.dir("/tmp", 0o1777).unwrap();
        let layer = rootfs.write().unwrap();

        assert_eq!(layer.digest, Digest::of(&layer.blob));
        let mut tar_bytes = Vec::new();
        GzDecoder::new(layer.blob.as_slice())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(layer.diff_id, Digest::of(&tar_bytes));

        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut listing = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(
                (
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                    header.mtime().unwrap()
                ),
                (0, 0, 0)
            );
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = header.mode().unwrap();
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            listing.push((path, mode, content));
        }
        let expect = |path: &str, mode, content: &str| (path.to_owned(), mode, content.to_owned());
        assert_eq!(
            listing,
            [
                expect("etc/", 0o755, ""),
                expect("etc/passwd", 0o644, "root:x:0:0::/:/x\n"),
                expect("tmp/", 0o1777, ""),
                expect("usr/", 0o755, ""),
                expect("usr/local/", 0o755, ""),
                expect("usr/local/bin/", 0o755, ""),
                expect("usr/local/bin/tool", 0o755, "\x7fELF pretend"),
            ]
        );
        let again = rootfs.write().unwrap();
        assert_eq!((again.digest, again.diff_id), (layer.digest, layer.diff_id));
    }

    #[test]
    fn conflicting_and_relative_paths_are_refused() {
        let mut rootfs = Rootfs::default();
        rootfs
            .file("/etc/group", 0o644, Source::Bytes(vec![]))
            .unwrap();
        // The same entry twice is fine (two binaries needing one library), a different one not.
        rootfs
            .file("/etc/group", 0o644, Source::Bytes(vec![]))
            .unwrap();
        assert!(
            rootfs
                .file("/etc/group", 0o600, Source::Bytes(vec![]))
                .is_err()
        );
        assert!(rootfs.dir("/etc/group/x", 0o755).is_err());
        assert!(rootfs.dir("etc", 0o755).is_err());
        assert!(rootfs.dir("/etc/../x", 0o755).is_err());
        assert!(rootfs.dir("/", 0o755).is_err());
    }
}
