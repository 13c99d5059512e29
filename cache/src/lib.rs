//! `kiln-cache`: digests, the per-user content-addressed store and action cache, and the
//! per-workspace SQLite state.

mod action_cache;
mod cas;
mod db;
mod digest;
mod error;
mod fsutil;
mod gc;
mod index;
mod local_cache;

pub use digest::{Digest, DigestFunction, DigestWriter};
pub use error::{CacheError, ErrorKind, Result};
pub use gc::GcStats;
pub use local_cache::{default_root, CacheConfig, CacheStats, CacheWarning, LocalCache};
