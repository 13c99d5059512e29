//! Bearer-token authorization: a tokens file maps each token to read-only or read-write rights.
//!
//! File format, one token per line: `<token> ro|rw [# comment]`; blank lines and lines starting
//! with `#` are ignored. A request carries `authorization: Bearer <token>`. Without a token a
//! request is anonymous and gets only the rights `--allow-anonymous` grants (none by default):
//! UNAUTHENTICATED when it needs more, PERMISSION_DENIED when a read-only token writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tonic::metadata::MetadataMap;
use tonic::Status;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Nothing.
    None,
    /// Capabilities, AC Get, CAS reads, FindMissingBlobs.
    Read,
    /// Reads plus uploads and AC updates.
    Write,
}

/// A malformed tokens file, with the line at fault.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("Cannot read tokens file `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `<token> ro|rw`.
    #[error("{}:{line}: expected `<token> ro|rw`, found `{text}`", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
}

/// The rules a server applies to every call.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: HashMap<String, Access>,
    anonymous: Access,
}

impl Auth {
    /// Everyone may read and write: for tests and a loopback-only cache.
    pub fn open() -> Auth {
        Auth {
            tokens: HashMap::new(),
            anonymous: Access::Write,
        }
    }

    /// Rules from a token table and the anonymous rights.
    pub fn new(tokens: HashMap<String, Access>, anonymous: Access) -> Auth {
        Auth { tokens, anonymous }
    }

    /// Whether any token may write.
    pub fn has_writers(&self) -> bool {
        self.tokens.values().any(|a| *a == Access::Write)
    }

    /// Reads a tokens file.
    pub fn load_tokens(path: &Path) -> Result<HashMap<String, Access>, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        parse_tokens(&text, path)
    }

    /// Checks that the caller whose metadata this is may do `needed`.
    pub fn check(&self, metadata: &MetadataMap, needed: Access) -> Result<(), Status> {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let granted = match token {
            Some(token) => match self.tokens.get(token) {
                Some(access) => *access,
                None => return Err(Status::unauthenticated("Unknown bearer token")),
            },
            None => self.anonymous,
        };
        if granted >= needed {
            return Ok(());
        }
        match (token, granted) {
            (None, Access::None) => Err(Status::unauthenticated(
                "This cache needs an `authorization: Bearer <token>` header",
            )),
            (None, _) => Err(Status::unauthenticated(
                "Anonymous clients may only read; send a read-write bearer token",
            )),
            (Some(_), _) => Err(Status::permission_denied(
                "This token may only read from the cache",
            )),
        }
    }
}

fn parse_tokens(text: &str, path: &Path) -> Result<HashMap<String, Access>, AuthError> {
    let mut tokens = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let access = match fields.as_slice() {
            [_, "ro"] => Access::Read,
            [_, "rw"] => Access::Write,
            _ => {
                return Err(AuthError::Syntax {
                    path: path.to_path_buf(),
                    line: i + 1,
                    text: raw.to_string(),
                })
            }
        };
        tokens.insert(fields[0].to_string(), access);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(token: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(t) = token {
            m.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        m
    }

    #[test]
    fn tokens_file_parses_and_reports_bad_lines() {
        let path = Path::new("tokens");
        let tokens = parse_tokens("# ci\nsecret rw\n\nreader ro # laptops\n", path).unwrap();
        assert_eq!(tokens["secret"], Access::Write);
        assert_eq!(tokens["reader"], Access::Read);
        let err = parse_tokens("ok rw\nbroken\n", path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokens:2: expected `<token> ro|rw`, found `broken`"
        );
    }

    #[test]
    fn rules() {
        let tokens = parse_tokens("w rw\nr ro\n", Path::new("t")).unwrap();
        let closed = Auth::new(tokens.clone(), Access::None);
        let code = |auth: &Auth, t, a| auth.check(&meta(t), a).err().map(|s| s.code());
        assert_eq!(
            code(&closed, None, Access::Read),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&closed, Some("x"), Access::Read),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(code(&closed, Some("r"), Access::Read), None);
        assert_eq!(
            code(&closed, Some("r"), Access::Write),
            Some(tonic::Code::PermissionDenied)
        );
        assert_eq!(code(&closed, Some("w"), Access::Write), None);
        let reads = Auth::new(tokens, Access::Read);
        assert_eq!(code(&reads, None, Access::Read), None);
        assert_eq!(
            code(&reads, None, Access::Write),
            Some(tonic::Code::Unauthenticated)
        );
    }
}
