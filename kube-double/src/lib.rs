//! An in-process Kubernetes API server double for tests, speaking the real wire protocol.
#![forbid(unsafe_code)]
