//! `aya::Pod` impls: the only unsafe code in this crate.
#![allow(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]

use crate::ConnectStats;

// SAFETY: `ConnectStats` is `#[repr(C)]` with only `u64` fields, so it has no padding and
// every bit pattern is a valid value.
unsafe impl aya::Pod for ConnectStats {}
