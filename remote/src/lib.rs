//! `kiln-remote`: REAPI v2 over gRPC. The server half, [`server`], is `kiln serve`: a shared
//! cache that Kiln and Bazel clients use, storing through `kiln-cache`.
//!
//! Invariant: only this crate speaks gRPC; it knows nothing of BUILD files or rules.

pub mod server;
