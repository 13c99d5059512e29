//! Target patterns as Bazel writes them on the command line: `//a/b:c`, `:c`, `//a/b`, `//...`,
//! `//a/...`, `//a:all`, `//a:*`, `//a/...:all`, and `-//a/...` to subtract.
//!
//! A [`PatternSet`] is evaluated left to right, as Bazel does: a positive pattern adds what it
//! matches, a negative one removes it, so `//... -//a/...` excludes `a` but `-//a/... //...` does
//! not. Wildcards (`...`, `:all`, `:*`) skip targets tagged `manual`; a target named explicitly is
//! selected even when it is `manual`.
//!
//! Patterns are plain values: resolving them against the workspace takes the package listing
//! (see `load::discover_packages`) and the loaded targets as arguments.

use std::collections::BTreeSet;
use std::fmt;

use crate::label::{Label, LabelError};
use crate::target::Target;

/// One target pattern, already made absolute against the working directory's package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// A single target, e.g. `//a/b:c` (or `//a/b`, meaning `//a/b:b`).
    Target(Label),
    /// Every target in one package: `//a:all`, `//a:*` or `//a:all-targets`.
    AllInPackage(String),
    /// Every target in a package and all packages beneath it: `//a/...` (`//...` for all).
    Recursive(String),
}

impl Pattern {
    /// Whether the pattern names targets by wildcard (and so skips `manual` ones).
    pub fn is_wildcard(&self) -> bool {
        !matches!(self, Pattern::Target(_))
    }

    /// Whether the pattern covers `label`, ignoring tags.
    pub fn covers(&self, label: &Label) -> bool {
        label.is_main_repo() && self.covers_package(&label.package)
            || matches!(self, Pattern::Target(l) if l == label)
    }

    /// Whether the pattern covers every target of `package`.
    pub fn covers_package(&self, package: &str) -> bool {
        match self {
            Pattern::Target(_) => false,
            Pattern::AllInPackage(p) => p == package,
            Pattern::Recursive(prefix) => is_under(package, prefix),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Target(label) => write!(f, "{label}"),
            Pattern::AllInPackage(p) => write!(f, "//{p}:all"),
            Pattern::Recursive(p) if p.is_empty() => write!(f, "//..."),
            Pattern::Recursive(p) => write!(f, "//{p}/..."),
        }
    }
}

/// Whether `package` is `prefix` or beneath it (`prefix` empty means the whole workspace).
fn is_under(package: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || package == prefix
        || package
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A target pattern that could not be parsed (a bad command line: exit code 2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// An empty pattern (or a lone `-`).
    #[error("Invalid target pattern `{0}`: it is empty; expected a pattern such as `//pkg:name` or `//...`")]
    Empty(String),
    /// `...` somewhere other than the last package segment.
    #[error("Invalid target pattern `{0}`: `...` must be the last package segment; expected `//pkg/...`")]
    MisplacedEllipsis(String),
    /// `//a/...:foo`.
    #[error("Invalid target pattern `{0}`: only `:all` or `:*` may follow `/...`; expected `//pkg/...` or `//pkg/...:all`")]
    RecursiveWithName(String),
    /// `@repo//...`: Kiln matches targets of the main repository only.
    #[error("Invalid target pattern `{0}`: patterns may only name the main repository; expected `//pkg:name`")]
    ExternalRepo(String),
    /// The pattern names a single target whose label is malformed.
    #[error("Invalid target pattern `{text}`: {source}")]
    Label {
        /// The pattern as written.
        text: String,
        /// Why its label is malformed.
        source: LabelError,
    },
}

/// An ordered list of positive and negative patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatternSet {
    /// The patterns in command-line order; `true` marks a negative (`-`) one.
    pub entries: Vec<(bool, Pattern)>,
}

impl PatternSet {
    /// Parses command-line patterns; relative ones (`:c`, `foo/...`, `foo:bar`) are relative to
    /// `cwd_package`, the package path of the working directory (empty at the workspace root).
    pub fn parse(patterns: &[String], cwd_package: &str) -> Result<PatternSet, PatternError> {
        let entries = patterns
            .iter()
            .map(|text| match text.strip_prefix('-') {
                Some(rest) => parse_one(text, rest, cwd_package).map(|p| (true, p)),
                None => parse_one(text, text, cwd_package).map(|p| (false, p)),
            })
            .collect::<Result<_, _>>()?;
        Ok(PatternSet { entries })
    }

    /// The packages that must be loaded to evaluate the set, sorted: those of `all_packages` a
    /// wildcard covers (and no later negative wildcard removes), plus the package of every target
    /// named explicitly (even if missing from `all_packages`, so loading reports it).
    pub fn packages_to_load(&self, all_packages: &[String]) -> Vec<String> {
        let mut out: BTreeSet<String> = all_packages
            .iter()
            .filter(|package| {
                self.entries
                    .iter()
                    .fold(false, |included, (negative, pattern)| match pattern {
                        Pattern::Target(l)
                            if !negative && l.is_main_repo() && &l.package == *package =>
                        {
                            true
                        }
                        p if p.covers_package(package) => !negative,
                        _ => included,
                    })
            })
            .cloned()
            .collect();
        for (negative, pattern) in &self.entries {
            if let (false, Pattern::Target(label)) = (negative, pattern) {
                out.insert(label.package.clone());
            }
        }
        out.into_iter().collect()
    }

    /// Whether the set selects `label`; `manual` says whether the target is tagged `manual`, which
    /// wildcards skip.
    pub fn matches(&self, label: &Label, manual: bool) -> bool {
        self.entries
            .iter()
            .fold(false, |included, (negative, pattern)| {
                let hit = pattern.covers(label) && (*negative || !manual || !pattern.is_wildcard());
                if hit {
                    !negative
                } else {
                    included
                }
            })
    }

    /// The labels of the selected targets, sorted and without duplicates.
    pub fn select<'t>(&self, targets: impl Iterator<Item = &'t Target>) -> Vec<Label> {
        let selected: BTreeSet<Label> = targets
            .filter(|t| self.matches(&t.label, t.tags().iter().any(|tag| tag == "manual")))
            .map(|t| t.label.clone())
            .collect();
        selected.into_iter().collect()
    }

    /// Targets named explicitly by positive patterns (to report those that do not exist).
    pub fn explicit_targets(&self) -> impl Iterator<Item = &Label> {
        self.entries.iter().filter_map(|(negative, p)| match p {
            Pattern::Target(l) if !negative => Some(l),
            _ => None,
        })
    }
}

fn parse_one(text: &str, body: &str, cwd_package: &str) -> Result<Pattern, PatternError> {
    if body.is_empty() {
        return Err(PatternError::Empty(text.to_string()));
    }
    let body = if let Some(rest) = body
        .strip_prefix("@@//")
        .or_else(|| body.strip_prefix("@//"))
    {
        format!("//{rest}")
    } else if body.starts_with('@') {
        return Err(PatternError::ExternalRepo(text.to_string()));
    } else {
        body.to_string()
    };
    let absolute = if let Some(abs) = body.strip_prefix("//") {
        abs.to_string()
    } else if body.starts_with(':') || cwd_package.is_empty() {
        format!("{cwd_package}{body}")
    } else {
        format!("{cwd_package}/{body}")
    };
    let bad_label = |source| PatternError::Label {
        text: text.to_string(),
        source,
    };
    if body.starts_with('/') && !body.starts_with("//") {
        // Let the label parser explain that `/abs` is not a label.
        return Label::parse(&body, cwd_package)
            .map(Pattern::Target)
            .map_err(bad_label);
    }
    let (package, target) = match absolute.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (absolute.as_str(), None),
    };
    let segments: Vec<&str> = package.split('/').collect();
    let recursive = segments.last() == Some(&"...");
    if segments.iter().rev().skip(1).any(|s| *s == "...") {
        return Err(PatternError::MisplacedEllipsis(text.to_string()));
    }
    let wildcard_target = matches!(target, Some("all" | "*" | "all-targets"));
    if recursive {
        if target.is_some() && !wildcard_target {
            return Err(PatternError::RecursiveWithName(text.to_string()));
        }
        let prefix = package
            .strip_suffix("...")
            .unwrap_or("")
            .trim_end_matches('/');
        if !prefix.is_empty() {
            Label::parse(&format!("//{prefix}:x"), "").map_err(bad_label)?;
        }
        return Ok(Pattern::Recursive(prefix.to_string()));
    }
    if wildcard_target {
        Label::parse(&format!("//{package}:x"), "").map_err(bad_label)?;
        return Ok(Pattern::AllInPackage(package.to_string()));
    }
    Label::parse(&format!("//{absolute}"), "")
        .map(Pattern::Target)
        .map_err(bad_label)
}
