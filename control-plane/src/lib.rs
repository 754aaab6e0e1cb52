//! The Ferrule control plane: the issuing CA behind a `Signer`, node join, certificate issuance
//! for entitled nodes, and operator calls, all over gRPC with mutual TLS.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod config;
pub mod directory;
pub mod public;
pub mod service;
pub mod state;
pub mod store;
pub mod tls_incoming;
pub mod token;
