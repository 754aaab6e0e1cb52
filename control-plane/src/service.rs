//! The gRPC services of the control plane.

mod admin;
mod config;
mod identity;
mod node;
pub mod workloads;

pub use admin::AdminService;
pub use admin::policies::{policy_resource, stored as stored_policies};
pub use config::ConfigService;
pub use identity::IdentityService;
pub use node::NodeService;
pub use workloads::WorkloadsService;
