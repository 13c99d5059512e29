//! Kiln's build engine, independent of any language: labels and patterns, BUILD-file loading
//! (Starlark), the target graph, actions and their REAPI keys, and the incremental scheduler.
//!
//! Rules (in `kiln-rules`) plug in through [`rule_schema`] (what the loader accepts) and the
//! analysis traits; processes are spawned only by `kiln-exec`.

pub mod action;
pub mod action_graph;
pub mod action_key;
pub mod analysis;
pub mod engine;
pub mod events;
pub mod execute;
pub mod host;
pub mod label;
pub mod load;
pub mod pattern;
pub mod permits;
pub mod query;
pub mod remote_tier;
pub mod repository;
pub mod rule_schema;
pub mod scheduler;
pub mod stopping;
pub mod target;
