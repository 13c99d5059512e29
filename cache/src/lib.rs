//! `kiln-cache`: digests, the per-user content-addressed store and action cache, and the
//! per-workspace SQLite state. API boundary crate: `graph`, `remote` and `cli` use only what is
//! re-exported here.
//!
//! # API
//!
//! **Digests**: [`DigestFunction`] (`Blake3` default, `Sha256`;
//! `name()`, `FromStr`) and [`Digest`] `{ function, hash: [u8; 32], size }` with
//! `of_bytes`, `of_file`, `of_reader`, `empty`, `hex`, `from_hex`, `Display` as `hex/size`;
//! [`DigestWriter`] hashes while copying.
//!
//! **Per-user store** ([`LocalCache`], root from [`default_root`]):
//! - `open(root, CacheConfig { max_size_bytes, fsync, action_result_memo_bytes })`
//! - CAS: `put_bytes`, `put_file`, `put_file_expecting` (typed [`CacheError::DigestMismatch`],
//!   stores nothing), `contains`, `read` (verified), `materialize(digest, dest, executable)`
//!   (verified copy, never a link), `put_bytes_expecting`, [`BlobWriter`] (a streamed upload,
//!   visible only once its digest checks out), [`BlobReader`] (a streamed read, hashed as it
//!   goes; `finish` says whether the bytes were the blob; a server's [`VerifiedBlobs`] memo
//!   spares re-hashing an unchanged, recently verified blob), `link_for_sandbox(digest, dest, executable)` (verified hard
//!   link for read-only sandbox mounts)
//! - action cache: `get_action_result`, `put_action_result` (opaque bytes, integrity-checked;
//!   a server may keep verified entries in memory, `action_result_memo_bytes`)
//! - size: `stats`, `gc(target_bytes)`, `enforce_cap`, `rebuild_index`, `flush`,
//!   `flush_in_background` (a server flushing the access records on its own timer),
//!   [`FlushTimer`] (a build's thread doing that while its workers answer hits)
//! - repairs: `take_warnings`, `corrupt_count`
//!
//! **Per-workspace state** ([`WorkspaceState`], `<state dir>/state.sqlite`):
//! - file-digest memo: `lookup`, `record`, `record_batch`, `load_file_memo` ([`FileMemo`]),
//!   `forget_files`, `digest_files` (parallel stat + hash of what the memo cannot vouch for)
//! - package memo: `get_package`, `put_package`, `remove_package`; engine values: `get_kv`,
//!   `put_kv`; `new_build_id`
//! - action history: `record_action(s)`, `last_two_actions` ([`ActionHistory`]), `durations`
//!
//! **Build lock**: [`BuildLock::acquire`] / [`BuildLock::try_acquire`] (flock on
//! `<state dir>/lock`, holder pid in [`CacheError::LockHeld`]).
//!
//! # Invariants
//! - A cache may miss but never lies: every blob read, materialized or linked is re-hashed
//!   (a streamed read may instead rest on [`VerifiedBlobs`]: the same file, unchanged by stat,
//!   hashed right within the server's interval); a blob or action-cache entry that fails its
//!   check is deleted and is a miss.
//! - A CAS file's name is always the digest of its content; files appear only by `rename`.
//! - Storage and indexes key on (digest function, hash): both functions give 64 hex digits.
//! - A blob evicted by another process is a miss, never an error.
//! - This crate knows nothing of Starlark, BUILD files, protobuf or gRPC.

mod action_cache;
mod action_history;
mod action_result_memo;
mod action_store;
mod blob_access;
mod blob_reader;
mod blob_writer;
mod cas;
mod db;
mod digest;
mod error;
mod file_memo;
mod flush_timer;
pub(crate) mod fsutil;
mod gc;
mod index;
mod local_cache;
mod lock;
mod verification_memo;
mod verified_blobs;
mod workspace_state;

pub use action_history::{ActionHistory, ActionRecord};
pub use blob_reader::BlobReader;
pub use blob_writer::BlobWriter;
pub use cas::CopyCheck;
pub use digest::{Digest, DigestFunction, DigestWriter};
pub use error::{CacheError, ErrorKind, Result};
pub use file_memo::{DigestedFile, FileMemo, FileStat, MemoRecord, RACY_WINDOW};
pub use flush_timer::FlushTimer;
pub use fsutil::{mark_top_directory, temp_file_count};
pub use gc::GcStats;
pub use local_cache::{default_root, CacheConfig, CacheStats, CacheWarning, LocalCache};
pub use lock::BuildLock;
pub use verified_blobs::{VerifiedBlobs, FINE_RACY_WINDOW};
pub use workspace_state::WorkspaceState;
