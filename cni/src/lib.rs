//! The chained CNI plugin `ferrule-cni` (CNI spec 1.0 and 1.1) and the installer that puts it
//! into the node's primary conflist.
#![forbid(unsafe_code)]
