//! `glob()` with Bazel's semantics: `*` and `?` within one path segment, `**` for any number of
//! segments, results sorted, hidden files matched like any other (Bazel does not treat a leading
//! `.` specially), and never a file of a subpackage (a directory holding a BUILD file).
//!
//! Every directory listed is remembered with a fingerprint of its listing, so that a memoized
//! package is re-evaluated exactly when a listing it depends on changes.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use super::fs::{build_file_in, join, PackageFs};

/// Recursion deeper than this is taken for a symlink cycle.
const MAX_DEPTH: usize = 128;

/// A stable fingerprint of a directory listing (names and whether each is a directory), in any
/// order: the hex BLAKE3 of the sorted entries.
pub fn listing_fingerprint(entries: &[(String, bool)]) -> String {
    let mut sorted: Vec<&(String, bool)> = entries.iter().collect();
    sorted.sort();
    let mut hasher = blake3::Hasher::new();
    for (name, is_dir) in sorted {
        hasher.update(name.as_bytes());
        hasher.update(if *is_dir { b"\0d\n" } else { b"\0f\n" });
    }
    hasher.finalize().to_hex().to_string()
}

/// Directory listings read during one package's evaluation, by workspace-relative path.
pub(crate) struct Listings<'a> {
    fs: &'a dyn PackageFs,
    seen: BTreeMap<String, Vec<(String, bool)>>,
}

impl<'a> Listings<'a> {
    pub(crate) fn new(fs: &'a dyn PackageFs) -> Self {
        Listings {
            fs,
            seen: BTreeMap::new(),
        }
    }

    /// The sorted entries of `dir`, read once.
    pub(crate) fn list(&mut self, dir: &str) -> io::Result<Vec<(String, bool)>> {
        if let Some(entries) = self.seen.get(dir) {
            return Ok(entries.clone());
        }
        let mut entries = self.fs.list_dir(dir)?;
        entries.sort();
        self.seen.insert(dir.to_string(), entries.clone());
        Ok(entries)
    }

    /// Whether `dir` holds a BUILD file (and so is a package of its own).
    fn is_package(&mut self, dir: &str) -> io::Result<bool> {
        Ok(build_file_in(&self.list(dir)?).is_some())
    }

    /// Every listed directory with its fingerprint, sorted by directory.
    pub(crate) fn fingerprints(&self) -> Vec<(String, String)> {
        self.seen
            .iter()
            .map(|(dir, entries)| (dir.clone(), listing_fingerprint(entries)))
            .collect()
    }
}

/// The arguments of one `glob()` call.
pub(crate) struct GlobArgs {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub exclude_directories: bool,
}

/// Why a glob failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GlobError {
    #[error("Invalid glob pattern `{pattern}`: {reason}")]
    Pattern {
        pattern: String,
        reason: &'static str,
    },
    #[error("Cannot list `{dir}`: {source}")]
    Io { dir: String, source: io::Error },
    #[error("`glob` recursion deeper than {MAX_DEPTH} directories under `{0}` (a symlink cycle?)")]
    TooDeep(String),
}

/// Expands a glob in `package`; results are package-relative and sorted.
pub(crate) fn glob(
    listings: &mut Listings<'_>,
    package: &str,
    args: &GlobArgs,
) -> Result<Vec<String>, GlobError> {
    let exclude: Vec<Vec<&str>> = args
        .exclude
        .iter()
        .map(|p| check_pattern(p))
        .collect::<Result<_, _>>()?;
    let mut out = BTreeSet::new();
    for pattern in &args.include {
        let segments = check_pattern(pattern)?;
        let mut walk = Walk {
            listings,
            dirs: !args.exclude_directories,
            out: &mut out,
        };
        walk.walk(package, "", &segments, 0)?;
    }
    Ok(out
        .into_iter()
        .filter(|path| {
            let path: Vec<&str> = path.split('/').collect();
            !exclude.iter().any(|p| match_path(p, &path))
        })
        .collect())
}

/// Bazel's checks on a pattern; returns its segments.
fn check_pattern(pattern: &str) -> Result<Vec<&str>, GlobError> {
    let bad = |reason| GlobError::Pattern {
        pattern: pattern.to_string(),
        reason,
    };
    if pattern.is_empty() {
        return Err(bad("a pattern may not be empty"));
    }
    if pattern.starts_with('/') {
        return Err(bad(
            "a pattern may not be absolute; expected a path relative to the package",
        ));
    }
    let segments: Vec<&str> = pattern.split('/').collect();
    for segment in &segments {
        match *segment {
            "" => {
                return Err(bad(
                    "empty path segments (`//` or a trailing `/`) are not allowed",
                ))
            }
            "." | ".." => return Err(bad("`.` and `..` segments are not allowed")),
            s if s.contains("**") && s != "**" => {
                return Err(bad(
                    "`**` must be a path segment of its own, as in `a/**/*.txt`",
                ))
            }
            _ => {}
        }
    }
    Ok(segments)
}

struct Walk<'l, 'a, 'o> {
    listings: &'l mut Listings<'a>,
    dirs: bool,
    out: &'o mut BTreeSet<String>,
}

impl Walk<'_, '_, '_> {
    /// Matches `segments` against the entries of `ws_dir` (workspace path), which is `rel_dir`
    /// relative to the package.
    fn walk(
        &mut self,
        ws_dir: &str,
        rel_dir: &str,
        segments: &[&str],
        depth: usize,
    ) -> Result<(), GlobError> {
        let Some((&segment, rest)) = segments.split_first() else {
            return Ok(());
        };
        if depth > MAX_DEPTH {
            return Err(GlobError::TooDeep(ws_dir.to_string()));
        }
        let entries = match self.listings.list(ws_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(GlobError::Io {
                    dir: ws_dir.to_string(),
                    source,
                })
            }
        };
        if segment == "**" {
            if rest.is_empty() {
                if self.dirs && !rel_dir.is_empty() {
                    self.out.insert(rel_dir.to_string());
                }
            } else {
                self.walk(ws_dir, rel_dir, rest, depth + 1)?;
            }
        }
        for (name, is_dir) in entries {
            let star = segment == "**";
            if !star && !match_segment(segment, &name) {
                continue;
            }
            let ws_child = join(ws_dir, &name);
            let rel_child = join(rel_dir, &name);
            if !is_dir {
                if rest.is_empty() {
                    self.out.insert(rel_child);
                }
                continue;
            }
            let is_package =
                self.listings
                    .is_package(&ws_child)
                    .map_err(|source| GlobError::Io {
                        dir: ws_child.clone(),
                        source,
                    })?;
            if is_package {
                continue;
            }
            if star {
                self.walk(&ws_child, &rel_child, segments, depth + 1)?;
            } else if rest.is_empty() {
                if self.dirs {
                    self.out.insert(rel_child);
                }
            } else {
                self.walk(&ws_child, &rel_child, rest, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// Whether a whole package-relative path matches a pattern's segments.
fn match_path(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_path(rest, &path[skip..])),
        Some((segment, rest)) => match path.split_first() {
            Some((name, path_rest)) => match_segment(segment, name) && match_path(rest, path_rest),
            None => false,
        },
    }
}

/// Whether one name matches one segment with `*` (any run) and `?` (one character).
fn match_segment(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with backtracking to the last `*`: linear in practice, never exponential.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::match_segment;

    #[test]
    fn segments() {
        assert!(match_segment("*.rs", "a.rs"));
        assert!(match_segment("*", ".hidden"));
        assert!(match_segment("a?c", "abc"));
        assert!(!match_segment("*.rs", "a.go"));
        assert!(match_segment("*a*b", "xxaxxb"));
        assert!(!match_segment("a", "ab"));
    }
}
