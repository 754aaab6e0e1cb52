//! Generated types and tonic stubs for the `ferrule.v1` control-plane API.
#![forbid(unsafe_code)]

pub mod channel;

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("ferrule.v1");
}
