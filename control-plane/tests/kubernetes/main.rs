//! The control plane in Kubernetes mode against the in-process API server double: nodes attest
//! with service account tokens, sign only for service accounts of their pods, the directory
//! follows Pod objects whatever nodes claim, and AuthorizationPolicy objects are the policies.

mod attest;
mod directory;
mod entitlement;
mod harness;
mod policies;
