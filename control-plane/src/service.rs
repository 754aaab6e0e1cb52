//! The gRPC services of the control plane.

mod admin;
mod identity;
mod node;
mod workloads;

pub use admin::AdminService;
pub use identity::IdentityService;
pub use node::NodeService;
pub use workloads::WorkloadsService;
