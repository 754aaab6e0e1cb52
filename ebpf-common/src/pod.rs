//! `aya::Pod` impls: the only unsafe code in this crate.
#![allow(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]

use crate::{ConnectStats, FlowKey, InboundStats, OriginalDst, PodConfig, PodIpKey, Settings};

// SAFETY (all impls below): each type is `#[repr(C)]` with only integer and byte-array fields
// laid out without implicit padding (checked by the size assertions in lib.rs), so every byte is
// initialised and every bit pattern is a valid value.
unsafe impl aya::Pod for Settings {}
unsafe impl aya::Pod for PodConfig {}
unsafe impl aya::Pod for PodIpKey {}
unsafe impl aya::Pod for OriginalDst {}
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for ConnectStats {}
unsafe impl aya::Pod for InboundStats {}
