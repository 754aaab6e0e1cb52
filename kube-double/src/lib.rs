//! An in-process Kubernetes API server double for tests, speaking the real wire protocol so
//! kube-rs clients (`Api`, `watcher`, `reflector`, `Discovery`) run against it unchanged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use ferrule_kube_double::KubeDouble;
//!
//! let double = KubeDouble::new(); // namespaces default and kube-system exist
//! double.start_local()?; // or double.serve(listener bound inside a netns)
//! let yaml = double.kubeconfig(&double.admin_token()); // or write_kubeconfig(path, token)
//! let config = kube::Config::from_custom_kubeconfig(
//!     kube::config::Kubeconfig::from_yaml(&yaml)?,
//!     &Default::default(),
//! )
//! .await?;
//! let client = kube::Client::try_from(config)?;
//!
//! // A test "kubelet" writes objects directly (k8s-openapi types, status included) ...
//! # let pod = k8s_openapi::api::core::v1::Pod::default();
//! double.put(&pod)?;
//! // ... and waits for what the code under test wrote through the API.
//! double
//!     .wait_for(Duration::from_secs(5), |d| d.get::<k8s_openapi::api::core::v1::Node>("", "node-a"))
//!     .await?;
//! // ServiceAccount tokens (what a projected token would hold), deny rules, compaction:
//! let token = double.issue_token("ferrule-system", "ferrule-agent", &["ferrule"], None, Duration::from_secs(600))?;
//! double.deny("system:serviceaccount:ferrule-system:ferrule-agent", "list", "pods");
//! double.compact(); // open watches get 410 Expired and must relist
//! # let _ = (client, token); Ok(()) }
//! ```
//!
//! What it serves: `/api/v1` and `/apis/<group>/<version>` resources (pods, namespaces, nodes,
//! serviceaccounts, services, configmaps, secrets, leases, RBAC objects, DaemonSets,
//! Deployments, the ferrule.dev AuthorizationPolicy CRD, CustomResourceDefinitions and whatever
//! they define); get/list/watch/create/update/patch/delete/deletecollection with server-managed
//! metadata (uid, one global resourceVersion, generation, creationTimestamp), status
//! subresources, label and field selectors, `limit`/`continue` pages, bookmarks, 410 after
//! compaction, metadata-only answers; TokenRequest, TokenReview, (Self)SubjectAccessReview,
//! SelfSubjectReview; discovery and `/version`. Every request needs a bearer token.
//!
//! Simplifications: deletes are immediate (no finalizers or grace periods), strategic merge
//! patches are JSON merge patches (lists are replaced), server-side apply is create-or-merge
//! with per-manager ownership of leaf fields (lists are leaves), RBAC is "allow all but the deny
//! rules", tokens are random strings rather than JWTs, there is no admission or schema
//! validation beyond names, and `dryRun` is refused.
//!
//! The double is kept honest by its own kube-rs tests (`tests/kube_rs`): those that need nothing
//! but the API run against a real API server instead when `KUBECONFIG` is set to its
//! kubeconfig, e.g. a kind cluster with
//! `KUBECONFIG=~/.kube/config cargo test -p ferrule-kube-double --test kube_rs`.
//! They cover CRUD with AlreadyExists and stale-resourceVersion conflicts, merge, strategic, JSON
//! and apply patches, the pod status subresource, pagination, field-selected watches and
//! TokenRequest/TokenReview, each in a namespace `ferrule-dbl-<random>` it deletes afterwards;
//! their pods name a node and a scheduler that do not exist, so nothing runs. The tests using
//! the double's own controls (direct writes, `compact`, `deny`, `advance_clock`, `issue_token`,
//! `shutdown`) run against the double only.
#![forbid(unsafe_code)]

mod auth;
mod direct;
mod double;
mod history;
mod kubeconfig;
mod meta;
mod patch;
mod registry;
mod routes;
mod selectors;
mod server;
mod status;
mod store;
mod tokens;
mod watch;

pub use auth::{ADMIN_USER, User};
pub use direct::DirectError;
pub use double::{Config, KubeDouble};
pub use kubeconfig::render as render_kubeconfig;
pub use registry::{Gvr, ResourceInfo};
pub use status::{Reason, Status};
pub use store::StoreError;
pub use tokens::{
    API_AUDIENCE, EXTRA_CREDENTIAL_ID, EXTRA_NODE_NAME, EXTRA_NODE_UID, EXTRA_POD_NAME,
    EXTRA_POD_UID, IssuedToken, Review, TokenError,
};
