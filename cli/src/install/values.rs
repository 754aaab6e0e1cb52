//! The settings of an installation: defaults, a values file merged over them field by field,
//! flags, then validation that names the field of a bad value.

use std::collections::BTreeMap;

use ferrule_identity::TrustDomain;
use ferrule_policy::{DnsLabel, DnsSubdomain};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::quantity;

mod image;

pub use image::{Image, PullPolicy};

/// A values file or flag the installer cannot use. `ferrule` exits 2 on it, as on other usage
/// errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValuesError {
    #[error("{origin}: YAML syntax error: {reason}")]
    Syntax { origin: String, reason: String },
    #[error("{origin}: field {field}: {reason}")]
    Parse {
        origin: String,
        field: String,
        reason: String,
    },
    #[error("field {field}: {reason}")]
    Invalid { field: String, reason: String },
}

pub(super) fn invalid(field: &str, reason: impl std::fmt::Display) -> ValuesError {
    ValuesError::Invalid {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    pub namespace: String,
    pub trust_domain: String,
    pub default_mode: Mode,
    pub image: Image,
    pub ca: Ca,
    pub store: Store,
    pub resources: Resources,
}

/// Where the control plane keeps its store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// An existing PersistentVolumeClaim in the namespace; empty: an emptyDir, lost with the
    /// pod.
    pub persistent_volume_claim: String,
}

/// How pods of a namespace labelled `ferrule.io/mode=enabled` are meshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only mTLS from mesh identities reaches the pods.
    Strict,
    /// Plaintext from outside the mesh is accepted too.
    Permissive,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::Permissive => "permissive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ca {
    pub signer: Signer,
    /// Secret with chain.pem, bundle.pem, issuing.key and ca-crls.pem (control plane only).
    pub secret: String,
    /// ConfigMap with bundle.pem, for the agents, which must not see the Secret.
    pub trust_bundle_config_map: String,
}

/// Where the issuing CA's key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signer {
    /// issuing.key in the CA Secret.
    File,
    /// A PKCS#11 token; not supported by the installer yet.
    Pkcs11,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub agent: Requirements,
    pub control_plane: Requirements,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    pub requests: ResourceList,
    pub limits: ResourceList,
}

/// Kubernetes quantities (`100m`, `128Mi`); absent: not set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceList {
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub ephemeral_storage: Option<String>,
}

impl ResourceList {
    /// `(Kubernetes resource name, field name, quantity)` of the entries that are set.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &'static str, &str)> {
        [
            ("cpu", "cpu", &self.cpu),
            ("memory", "memory", &self.memory),
            (
                "ephemeral-storage",
                "ephemeral_storage",
                &self.ephemeral_storage,
            ),
        ]
        .into_iter()
        .filter_map(|(name, field, value)| value.as_deref().map(|v| (name, field, v)))
    }
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> Requirements {
    Requirements {
        requests: ResourceList {
            cpu: Some(cpu.into()),
            memory: Some(memory.into()),
            ephemeral_storage: None,
        },
        // No CPU limit: throttling a data path or a signer helps no one; memory is capped.
        limits: ResourceList {
            memory: Some(memory_limit.into()),
            ..ResourceList::default()
        },
    }
}

impl Default for Values {
    fn default() -> Self {
        Self {
            namespace: "ferrule-system".into(),
            trust_domain: "cluster.local".into(),
            default_mode: Mode::Strict,
            image: Image {
                registry: String::new(),
                repository: "ferrule".into(),
                tag: env!("CARGO_PKG_VERSION").into(),
                pull_policy: PullPolicy::IfNotPresent,
            },
            ca: Ca {
                signer: Signer::File,
                secret: "ferrule-ca".into(),
                trust_bundle_config_map: "ferrule-trust-bundle".into(),
            },
            store: Store {
                persistent_volume_claim: String::new(),
            },
            resources: Resources {
                agent: resources("100m", "128Mi", "512Mi"),
                control_plane: resources("50m", "64Mi", "256Mi"),
            },
        }
    }
}

impl Values {
    /// The defaults with a values file merged over them: a mapping merges key by key, anything
    /// else (and `null`, which unsets an optional field) replaces the default.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ValuesError> {
        let file: Option<Value> =
            serde_norway::from_str(text).map_err(|e| ValuesError::Syntax {
                origin: origin.to_owned(),
                reason: e.to_string(),
            })?;
        let mut merged = serde_json::to_value(Self::default()).expect("values serialize");
        merge(&mut merged, file.unwrap_or(Value::Null));
        serde_path_to_error::deserialize(&merged).map_err(|e| ValuesError::Parse {
            origin: origin.to_owned(),
            field: e.path().to_string(),
            reason: e.into_inner().to_string(),
        })
    }

    pub fn validate(&self) -> Result<(), ValuesError> {
        DnsLabel::new(&self.namespace).map_err(|e| invalid("namespace", e))?;
        self.trust_domain
            .parse::<TrustDomain>()
            .map_err(|e| invalid("trust_domain", format!("{:?}: {e}", self.trust_domain)))?;
        self.image.validate()?;
        if self.ca.signer == Signer::Pkcs11 {
            return Err(invalid(
                "ca.signer",
                "PKCS#11 signers cannot be installed this way yet (the control plane's \
                 PKCS#11 backend comes with a later release); use `file`, with issuing.key in \
                 the CA Secret",
            ));
        }
        for (field, name) in [
            ("ca.secret", &self.ca.secret),
            (
                "ca.trust_bundle_config_map",
                &self.ca.trust_bundle_config_map,
            ),
        ] {
            DnsSubdomain::new(name).map_err(|e| invalid(field, e))?;
        }
        let claim = &self.store.persistent_volume_claim;
        if !claim.is_empty() {
            DnsSubdomain::new(claim).map_err(|e| invalid("store.persistent_volume_claim", e))?;
        }
        for (field, requirements) in [
            ("resources.agent", &self.resources.agent),
            ("resources.control_plane", &self.resources.control_plane),
        ] {
            validate_requirements(field, requirements)?;
        }
        Ok(())
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, over) => *slot = over,
    }
}

fn validate_requirements(field: &str, requirements: &Requirements) -> Result<(), ValuesError> {
    let mut parsed = BTreeMap::new();
    for (side, list) in [
        ("requests", &requirements.requests),
        ("limits", &requirements.limits),
    ] {
        for (name, key, text) in list.entries() {
            let value =
                quantity::parse(text).map_err(|e| invalid(&format!("{field}.{side}.{key}"), e))?;
            parsed.insert((side, name), (key, value));
        }
    }
    for ((side, name), (key, request)) in &parsed {
        if *side == "requests"
            && let Some((_, limit)) = parsed.get(&("limits", name))
            && request > limit
        {
            return Err(invalid(
                &format!("{field}.requests.{key}"),
                format!("the request exceeds the limit (limits.{key})"),
            ));
        }
    }
    Ok(())
}
