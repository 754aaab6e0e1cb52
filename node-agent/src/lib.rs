pub mod app;
pub mod config;
pub mod control;
pub mod ebpf;
pub mod identity;
