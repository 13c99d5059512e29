//! Kiln's REAPI v2 remote cache: [`client`], the tier behind the local cache that builds use
//! (any REAPI cache: `kiln serve`, bazel-remote, BuildBuddy, NativeLink, ...).

pub mod client;
