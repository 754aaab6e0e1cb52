//! The archive of one image: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`)
//! that also carries Docker's `manifest.json` and `repositories` pointing at the same blobs, the
//! shape `docker save` has written since Docker 25. `ctr images import` (and so `kind load
//! image-archive`) reads the OCI layout; `docker load` reads manifest.json.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{BufWriter, Write as _},
    path::Path,
};

use anyhow::Context as _;
use serde::Serialize;

use super::{digest::Digest, layer, oci::Image, reference::Reference};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// One entry of Docker's manifest.json.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    repo_tags: [String; 1],
    layers: [String; 1],
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Writes the archive of `image` named `reference` to `path` (through a temporary file beside
/// it, so an interrupted run leaves no half archive under the final name).
pub fn write(path: &Path, reference: &Reference, image: &Image) -> anyhow::Result<()> {
    let docker_manifest = serde_json::to_vec(&[DockerManifest {
        config: blob_path(&image.config_digest),
        repo_tags: [reference.to_string()],
        layers: [blob_path(&image.layer.digest)],
    }])?;
    // Docker's legacy name → tag → top layer (by its uncompressed digest, as `docker save`).
    let repositories = serde_json::to_vec(&BTreeMap::from([(
        reference.familiar_repository(),
        BTreeMap::from([(reference.tag(), image.layer.diff_id.hex())]),
    )]))?;
    let index = image.index(reference)?;
    let files: BTreeMap<String, &[u8]> = BTreeMap::from([
        (blob_path(&image.config_digest), image.config.as_slice()),
        (blob_path(&image.layer.digest), image.layer.blob.as_slice()),
        (
            blob_path(&image.manifest_descriptor.digest),
            image.manifest.as_slice(),
        ),
        ("index.json".to_owned(), index.as_slice()),
        ("manifest.json".to_owned(), docker_manifest.as_slice()),
        ("oci-layout".to_owned(), OCI_LAYOUT),
        ("repositories".to_owned(), repositories.as_slice()),
    ]);

    let partial = path.with_extension("tar.partial");
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = layer::header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut header, dir, std::io::empty())?;
    }
    for (name, bytes) in files {
        let mut header = layer::header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        tar.append_data(&mut header, &name, bytes)?;
    }
    let mut file = tar.into_inner()?.into_inner()?;
    file.flush()?;
    file.sync_all()?;
    fs::rename(&partial, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, io::Read as _};

    use serde_json::Value;

    use super::write;
    use crate::image::{
        digest::Digest,
        layer::{Rootfs, Source},
        oci::Image,
        reference::Reference,
    };

    #[test]
    fn docker_and_oci_views_name_the_same_blobs_which_match_their_digests() {
        let mut rootfs = Rootfs::default();
        rootfs
            .file("/usr/local/bin/x", 0o755, Source::Bytes(b"x".to_vec()))
            .unwrap();
        let image = Image::new(rootfs.write().unwrap(), "arm64", "/usr/local/bin/x").unwrap();
        let reference = Reference::new(Some("localhost:5000"), "ferrule/agent", "t").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.tar");
        write(&path, &reference, &image).unwrap();

        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            files.insert(name, bytes);
        }
        let json = |name: &str| -> Value { serde_json::from_slice(&files[name]).unwrap() };
        // Every blob is stored under its own digest.
        for (name, bytes) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(Digest::of(bytes).hex(), hex, "{name}");
            }
        }
        assert_eq!(json("oci-layout")["imageLayoutVersion"], "1.0.0");
        let index = json("index.json");
        let manifest_blob = format!(
            "blobs/sha256/{}",
            index["manifests"][0]["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap()
        );
        let manifest: Value = serde_json::from_slice(&files[&manifest_blob]).unwrap();
        let oci_blob = |descriptor: &Value| {
            format!(
                "blobs/sha256/{}",
                &descriptor["digest"].as_str().unwrap()[7..]
            )
        };

        let docker = json("manifest.json");
        assert_eq!(docker[0]["RepoTags"][0], "localhost:5000/ferrule/agent:t");
        assert_eq!(
            docker[0]["Config"].as_str().unwrap(),
            oci_blob(&manifest["config"])
        );
        assert_eq!(
            docker[0]["Layers"][0].as_str().unwrap(),
            oci_blob(&manifest["layers"][0])
        );
        let repositories = json("repositories");
        assert_eq!(
            repositories["localhost:5000/ferrule/agent"]["t"],
            image.layer.diff_id.hex()
        );
        assert!(!dir.path().join("agent.tar.partial").exists());
    }
}
