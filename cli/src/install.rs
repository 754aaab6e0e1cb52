//! `ferrule install kubernetes`: the manifests that install Ferrule on a cluster, printed as
//! multi-document YAML for `| kubectl apply -f -` (as `linkerd install` and `cilium install` do).
//!
//! Every object is a k8s-openapi type serialized as it is (the CRD comes from
//! `ferrule_policy::crd`), so what is printed is what the API accepts; the comments that say why
//! an object or field is as it is sit above each document. Settings come from `--values FILE`
//! (YAML, see `values`) and flags, which win over the file.

mod agent;
mod config;
mod control_plane;
mod meta;
mod pod;
mod quantity;
pub(crate) mod rbac;
mod render;
mod values;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::output;

pub use values::ValuesError;

use values::{Mode, Values};

#[derive(Debug, Subcommand)]
pub enum InstallCommand {
    Kubernetes(KubernetesArgs),
}

/// Print the manifests that install Ferrule on a Kubernetes cluster
///
/// ferrule install kubernetes [--values values.yaml] [flags] | kubectl apply -f -
///
/// Prints: the ferrule-system namespace, the AuthorizationPolicy CRD, service accounts and
/// least-privilege RBAC, the agent's and the control plane's configuration, the control plane
/// (Deployment, Service, PodDisruptionBudget) and the agent DaemonSet. Before applying, create
/// the CA Secret and the trust-bundle ConfigMap (see the header of the output).
///
/// The values file (YAML, every field optional, unknown fields refused):
///   namespace: ferrule-system
///   trust_domain: cluster.local        # must be the trust domain of `ferrule ca init`
///   default_mode: strict               # for namespaces labelled ferrule.io/mode=enabled
///   image: {registry: "", repository: ferrule, tag: <version>, pull_policy: IfNotPresent}
///   ca: {signer: file, secret: ferrule-ca, trust_bundle_config_map: ferrule-trust-bundle}
///   store: {persistent_volume_claim: ""}  # the control plane's store; empty: an emptyDir
///   resources:
///     agent: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 512Mi}}
///     control_plane: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}
/// Flags override the file. A bad value exits 2 naming the field.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct KubernetesArgs {
    /// YAML file of settings (fields above); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    values: Option<PathBuf>,
    /// Namespace of the control plane and agents (mesh-wide policies live here too).
    #[arg(long)]
    namespace: Option<String>,
    /// The mesh's trust domain, as given to `ferrule ca init`.
    #[arg(long)]
    trust_domain: Option<String>,
    /// Mode of namespaces labelled ferrule.io/mode=enabled.
    #[arg(long, value_enum)]
    default_mode: Option<Mode>,
    /// Registry in front of the image names, host[:port][/path] (none by default: the names
    /// `kind load image-archive` loads from `cargo xtask image`).
    #[arg(long)]
    image_registry: Option<String>,
    /// Repository of the images: <registry>/<repository>/agent and .../control-plane.
    #[arg(long)]
    image_repository: Option<String>,
    /// Image tag [default: this CLI's version].
    #[arg(long)]
    image_tag: Option<String>,
    /// Secret with the CA files of `ferrule ca init` (chain.pem, bundle.pem, issuing.key,
    /// ca-crls.pem).
    #[arg(long)]
    ca_secret: Option<String>,
}

pub fn run(cmd: InstallCommand) -> anyhow::Result<()> {
    match cmd {
        InstallCommand::Kubernetes(args) => {
            let values = values_of(args)?;
            output::print(&render::manifests(&values))
        }
    }
}

fn values_of(args: KubernetesArgs) -> anyhow::Result<Values> {
    let mut values = match &args.values {
        None => Values::default(),
        Some(path) => {
            let (text, origin) = if path.as_os_str() == "-" {
                let stdin = std::io::read_to_string(std::io::stdin());
                (stdin.context("reading standard input")?, "<stdin>".into())
            } else {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                (text, path.display().to_string())
            };
            Values::from_yaml(&text, &origin)?
        }
    };
    let flags = [
        (args.namespace, &mut values.namespace),
        (args.trust_domain, &mut values.trust_domain),
        (args.image_registry, &mut values.image.registry),
        (args.image_repository, &mut values.image.repository),
        (args.image_tag, &mut values.image.tag),
        (args.ca_secret, &mut values.ca.secret),
    ];
    for (flag, slot) in flags {
        if let Some(flag) = flag {
            *slot = flag;
        }
    }
    if let Some(mode) = args.default_mode {
        values.default_mode = mode;
    }
    values.validate()?;
    Ok(values)
}
