//! The crate's error type: every variant names the path (or input) it is about.
//!
//! A caller such as the scheduler may treat any [`CacheError`] from the cache as a miss plus a
//! log line; the cache itself never returns wrong bytes, it returns a miss or an error.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Result alias used throughout the crate.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// Broad class of an error, for choosing an exit code and a message tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input from the user (e.g. a malformed digest on the command line).
    UserInput,
    /// The machine got in the way (I/O, permissions, a locked or broken database).
    Environment,
    /// Kiln broke one of its own invariants.
    Internal,
}

/// Errors from the cache, the index and the workspace state.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An I/O operation on `path` failed.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A SQLite operation on the database at `path` failed.
    #[error("SQLite error in `{path}`: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// A file's content does not have the digest the caller promised; nothing was stored.
    #[error("Content of `{path}` has digest `{actual}`, expected `{expected}`")]
    DigestMismatch {
        /// The file that was hashed.
        path: PathBuf,
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of the bytes actually read.
        actual: Digest,
    },
    /// A textual digest could not be parsed.
    #[error("Invalid digest `{input}`: {reason}")]
    InvalidDigest {
        /// The text that was parsed.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A digest function name other than `blake3` or `sha256`.
    #[error("Unknown digest function `{0}` (expected `blake3` or `sha256`)")]
    UnknownDigestFunction(String),
    /// A row of the database at `path` could not be decoded.
    #[error("Corrupt record in `{path}`: {detail}")]
    CorruptRecord {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Another process holds the build lock at `path`.
    #[error("Another kiln process{} holds the build lock `{path}`", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    LockHeld {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, when it could be read from the lock file.
        pid: Option<u32>,
    },
}

impl CacheError {
    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CacheError::InvalidDigest { .. } | CacheError::UnknownDigestFunction(_) => {
                ErrorKind::UserInput
            }
            CacheError::Io { .. } | CacheError::Sqlite { .. } | CacheError::LockHeld { .. } => {
                ErrorKind::Environment
            }
            CacheError::DigestMismatch { .. } | CacheError::CorruptRecord { .. } => {
                ErrorKind::Environment
            }
        }
    }

    pub(crate) fn io(path: &Path) -> impl Fn(io::Error) -> CacheError {
        let path = path.to_path_buf();
        move |source| CacheError::Io {
            path: path.clone(),
            source,
        }
    }

    pub(crate) fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> CacheError {
        let path = path.to_path_buf();
        move |source| CacheError::Sqlite {
            path: path.clone(),
            source,
        }
    }
}
