//! `kiln-remote`: REAPI v2 over gRPC. [`client`] is the tier behind the local cache that builds
//! use (any REAPI cache: `kiln serve`, bazel-remote, BuildBuddy, NativeLink, ...); [`server`] is
//! `kiln serve`: a shared cache that Kiln and Bazel clients use, storing through `kiln-cache`.
//!
//! Invariant: only this crate speaks gRPC; it knows nothing of BUILD files or rules.

pub mod client;
pub mod server;
