//! An in-process Kubernetes API server double for tests, speaking the real wire protocol so
//! kube-rs clients (`Api`, `watcher`, `reflector`) run against it unchanged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let double = ferrule_kube_double::KubeDouble::new();
//! double.start_local()?;
//! let kubeconfig = double.kubeconfig(&double.admin_token());
//! // kube::Config::from_custom_kubeconfig(Kubeconfig::from_yaml(&kubeconfig)?, &Default::default())
//! # Ok(()) }
//! ```
//!
//! What it serves: core `/api/v1` and `/apis/<group>/<version>` resources (pods, namespaces,
//! nodes, serviceaccounts, the ferrule.dev CRD, CustomResourceDefinitions and whatever they
//! define, and a few more), get/list/watch/create/update/patch/delete with server-managed
//! metadata, status subresources, selectors, pagination, bookmarks and 410 after compaction;
//! TokenRequest, TokenReview and access reviews; bearer-token authentication and deny rules.
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
