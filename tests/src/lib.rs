//! The end-to-end harness: runs the real `ferrule-control-plane` and `ferrule-agent` binaries with
//! throwaway CAs, ports and directories, and cleans up when dropped (also on panic).
#![forbid(unsafe_code)]

pub mod apps;
pub mod bench;
pub mod cluster;
pub mod control_plane;
pub mod demo;
pub mod etcd;
pub mod kube_mesh;
pub mod loadgen;
pub mod mesh;
pub mod metrics;
pub mod process;
pub mod prometheus;
pub mod soak;
pub mod watch_client;

pub use control_plane::ControlPlaneFixture;
pub use process::{Child, binary, free_port};
