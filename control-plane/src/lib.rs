//! The Ferrule control plane: the issuing CA behind a `Signer`, node join, certificate issuance
//! for entitled nodes, and operator calls, all over gRPC with mutual TLS.
#![forbid(unsafe_code)]

pub mod agents;
pub mod app;
pub mod auth;
pub mod config;
pub mod connections;
pub mod handshakes;
pub mod kubernetes;
pub mod limits;
pub mod maintenance;
pub mod mesh_config;
pub mod metrics;
pub mod offline_crls;
pub mod pod_networks;
pub mod public;
pub mod published;
pub mod revocations;
pub mod service;
pub mod sources;
pub mod standalone;
pub mod state;
pub mod store;
pub mod tls_incoming;
pub mod token;
