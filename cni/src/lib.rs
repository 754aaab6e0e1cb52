//! The chained CNI plugin `ferrule-cni` (CNI spec 1.0 and 1.1) and the installer that puts it
//! into the node's primary conflist.
//!
//! The plugin ([`plugin::run`]) reads the pod from `CNI_ARGS` and its IPs from `prevResult`,
//! enrolls it through the agent's local API ([`agent`]) and passes `prevResult` on. When the
//! agent cannot be reached it fails closed unless the Kubernetes API says the pod is not meshed
//! ([`fallback`]). The agent calls [`install`] to copy the binary and chain the plugin.
#![forbid(unsafe_code)]

pub mod agent;
pub mod args;
pub mod env;
pub mod error;
pub mod fallback;
pub mod install;
pub mod netconf;
pub mod plugin;
pub mod result;
pub mod version;

pub use error::{CniError, Code};
pub use install::{
    ApiAccess, ChainStatus, InstallConfig, Installed, chain_status, install, is_installed,
    uninstall, watch,
};
pub use netconf::{PLUGIN_TYPE, PluginConf};
