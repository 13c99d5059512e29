//! The REAPI v2 cache client. [`RemoteClient`] implements the engine's
//! [`RemoteCache`](kiln_graph::remote_tier::RemoteCache) tier over gRPC: it negotiates
//! capabilities on first use, reads and writes the action cache, moves blobs with batched calls
//! (small) or ByteStream (large), verifies every blob it downloads, retries transient errors with
//! backoff, drops a server whose calls keep failing, and turns every remote problem into a miss plus
//! one warning.

mod action_cache;
mod batch;
mod breaker;
mod bytestream;
mod capabilities;
mod cas;
mod config;
mod connection;
mod retry;
mod tier;

pub use config::{parse_header, ClientConfig, ClientTls, ConfigError};
pub use tier::RemoteClient;
