pub mod app;
pub mod config;
pub mod control;
pub mod directory;
pub mod ebpf;
pub mod enroll;
pub mod identity;
pub mod keyring;
