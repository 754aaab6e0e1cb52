//! The OCI documents of a one-layer image: config, manifest, and the index entry naming it.
//! Serialized with fields in a fixed order and no timestamps but the epoch, so they are as
//! deterministic as the layer.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{digest::Digest, layer::Layer, reference::Reference};

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The name containerd gives an imported image (fully qualified).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI layout's name of a manifest: the tag, as `docker save` and `ctr export` write it.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Every timestamp in the image: the epoch, so that rebuilding changes no byte.
const CREATED: &str = "1970-01-01T00:00:00Z";
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: &'static str,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<&'static str, String>,
}

impl Descriptor {
    fn of(media_type: &'static str, bytes: &[u8]) -> Self {
        Self {
            media_type,
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    pub architecture: &'static str,
    pub os: &'static str,
}

/// The blobs of one image and the descriptor of its manifest.
#[derive(Debug)]
pub struct Image {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layer: Layer,
    pub manifest: Vec<u8>,
    pub manifest_descriptor: Descriptor,
}

#[derive(Serialize)]
struct Config<'a> {
    created: &'static str,
    architecture: &'static str,
    os: &'static str,
    config: RuntimeConfig<'a>,
    rootfs: RootFs<'a>,
    history: [History; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig<'a> {
    entrypoint: [&'a str; 1],
    env: [&'static str; 1],
    working_dir: &'static str,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: [&'a Digest; 1],
}

#[derive(Serialize)]
struct History {
    created: &'static str,
    created_by: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: &'a Descriptor,
    layers: [&'a Descriptor; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: [&'a Descriptor; 1],
}

impl Image {
    /// An image of `layer` for linux/`architecture` that runs `entrypoint` (absolute path).
    pub fn new(layer: Layer, architecture: &'static str, entrypoint: &str) -> anyhow::Result<Self> {
        let config = serde_json::to_vec(&Config {
            created: CREATED,
            architecture,
            os: "linux",
            config: RuntimeConfig {
                entrypoint: [entrypoint],
                env: [PATH],
                working_dir: "/",
            },
            rootfs: RootFs {
                kind: "layers",
                diff_ids: [&layer.diff_id],
            },
            history: [History {
                created: CREATED,
                created_by: "cargo xtask image",
            }],
        })?;
        let config_descriptor = Descriptor::of(MEDIA_TYPE_CONFIG, &config);
        let layer_descriptor = Descriptor {
            media_type: MEDIA_TYPE_LAYER,
            digest: layer.digest.clone(),
            size: layer.blob.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        };
        let manifest = serde_json::to_vec(&Manifest {
            schema_version: 2,
            media_type: MEDIA_TYPE_MANIFEST,
            config: &config_descriptor,
            layers: [&layer_descriptor],
        })?;
        let manifest_descriptor = Descriptor {
            platform: Some(Platform {
                architecture,
                os: "linux",
            }),
            ..Descriptor::of(MEDIA_TYPE_MANIFEST, &manifest)
        };
        Ok(Self {
            config_digest: config_descriptor.digest,
            config,
            layer,
            manifest,
            manifest_descriptor,
        })
    }

    /// `index.json` of an OCI layout holding this image under `reference`.
    pub fn index(&self, reference: &Reference) -> anyhow::Result<Vec<u8>> {
        let mut named = self.manifest_descriptor.clone();
        named.annotations = BTreeMap::from([
            (ANNOTATION_IMAGE_NAME, reference.normalized()),
            (ANNOTATION_REF_NAME, reference.tag().to_owned()),
        ]);
        Ok(serde_json::to_vec(&Index {
            schema_version: 2,
            media_type: MEDIA_TYPE_INDEX,
            manifests: [&named],
        })?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::Image;
    use crate::image::{
        digest::Digest,
        layer::{Rootfs, Source},
        reference::Reference,
    };

    #[test]
    fn config_manifest_and_index_point_at_each_other_by_digest() {
        let mut rootfs = Rootfs::default();
        rootfs
            .file("/usr/local/bin/x", 0o755, Source::Bytes(b"x".to_vec()))
            .unwrap();
        let layer = rootfs.write().unwrap();
        let (layer_digest, diff_id) = (layer.digest.to_string(), layer.diff_id.to_string());
        let image = Image::new(layer, "amd64", "/usr/local/bin/x").unwrap();

        let config: Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["Entrypoint"], json!(["/usr/local/bin/x"]));
        assert_eq!(
            config["rootfs"],
            json!({"type": "layers", "diff_ids": [diff_id]})
        );

        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(
            manifest["config"]["digest"],
            Digest::of(&image.config).to_string()
        );
        assert_eq!(manifest["config"]["size"], image.config.len());
        assert_eq!(manifest["layers"][0]["digest"], layer_digest);
        assert_eq!(manifest["layers"][0]["size"], image.layer.blob.len());

        let reference = Reference::new(None, "ferrule/agent", "t1").unwrap();
        let index: Value = serde_json::from_slice(&image.index(&reference).unwrap()).unwrap();
        assert_eq!(
            index["manifests"],
            json!([{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": Digest::of(&image.manifest).to_string(),
                "size": image.manifest.len(),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": "docker.io/ferrule/agent:t1",
                    "org.opencontainers.image.ref.name": "t1",
                },
            }])
        );
    }
}
