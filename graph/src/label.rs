//! Labels: `@repo//pkg/path:name`, as Bazel writes and prints them.
//!
//! [`Label::parse`] accepts every form a BUILD file or command line may use (`//a/b:c`, `//a/b`,
//! `:c`, `c`, `@repo//a:b`, `@@repo//a:b`, `@//a:b`, `//:c`, `@repo`) and makes relative ones
//! absolute against the package they were written in. A malformed label is a [`LabelError`] whose
//! message says what was wrong and what was expected.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A fully resolved label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    /// External repository name without `@`, or empty for the main repository.
    pub repo: String,
    /// Package path, e.g. `a/b` (empty for the root package).
    pub package: String,
    /// Target name within the package (may contain `/`).
    pub name: String,
}

/// A label that could not be parsed: the text as written and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Invalid label `{text}`: {problem}; expected {}", problem.expected())]
pub struct LabelError {
    /// The label as written.
    pub text: String,
    /// What was wrong with it.
    pub problem: LabelProblem,
}

/// What was wrong with a label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelProblem {
    /// Nothing was written.
    #[error("a label may not be empty")]
    Empty,
    /// `@` not followed by a repository name and `//`.
    #[error("bad repository name `{0}`")]
    BadRepo(String),
    /// `//a:` or `:`.
    #[error("the target name after `:` is empty")]
    EmptyName,
    /// `//` with neither a package nor a name.
    #[error("the root package needs a target name")]
    RootWithoutName,
    /// `a:b` or `/abs`: a package path that does not start with `//`.
    #[error("a package path must start with `//`")]
    NotAbsolute,
    /// A `.` or `..` segment in the package.
    #[error("package names may not contain `{0}`")]
    PackageDotSegment(String),
    /// A `.` or `..` segment in the name.
    #[error("target names may not contain `{0}` segments")]
    NameDotSegment(String),
    /// `a//b` or a trailing slash in the package.
    #[error(
        "package names may not contain empty segments (`//` inside, or a leading or trailing `/`)"
    )]
    PackageEmptySegment,
    /// `a//b` or a leading or trailing slash in the name.
    #[error(
        "target names may not contain empty segments (`//` inside, or a leading or trailing `/`)"
    )]
    NameEmptySegment,
    /// A character a package name may not contain.
    #[error("package names may not contain {0:?}")]
    PackageChar(char),
    /// A character a target name may not contain.
    #[error("target names may not contain {0:?}")]
    NameChar(char),
}

impl LabelProblem {
    /// The shape of label the user should have written.
    fn expected(&self) -> &'static str {
        match self {
            LabelProblem::BadRepo(_) => "`@repo//package:name`",
            LabelProblem::EmptyName | LabelProblem::RootWithoutName => {
                "`//package:name` or `//:name`"
            }
            LabelProblem::NotAbsolute => "`//package:name` or `:name`",
            LabelProblem::NameDotSegment(_)
            | LabelProblem::NameEmptySegment
            | LabelProblem::NameChar(_) => {
                "`//package:name` with a name such as `file.txt` or `dir/file.txt`"
            }
            _ => "`//package:name`",
        }
    }
}

impl Label {
    /// A label from its parts, unchecked; `repo` is empty for the main repository.
    pub fn new(
        repo: impl Into<String>,
        package: impl Into<String>,
        name: impl Into<String>,
    ) -> Label {
        Label {
            repo: repo.into(),
            package: package.into(),
            name: name.into(),
        }
    }

    /// Parses `text` as written in the BUILD file of `current_package` (a valid package path such
    /// as `a/b`, empty for the root package): relative labels (`:c`, `c`) resolve to that package
    /// in the main repository.
    pub fn parse(text: &str, current_package: &str) -> Result<Label, LabelError> {
        parse(text, current_package).map_err(|problem| LabelError {
            text: text.to_string(),
            problem,
        })
    }

    /// Whether the label is in the main repository.
    pub fn is_main_repo(&self) -> bool {
        self.repo.is_empty()
    }

    /// The package's directory relative to the workspace root: `a/b` for `//a/b:c`, and Bazel's
    /// `external/repo/a/b` for `@repo//a/b:c`.
    pub fn package_dir(&self) -> PathBuf {
        let mut dir = PathBuf::new();
        if !self.is_main_repo() {
            dir.push("external");
            dir.push(&self.repo);
        }
        if !self.package.is_empty() {
            dir.push(&self.package);
        }
        dir
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_main_repo() {
            write!(f, "@{}", self.repo)?;
        }
        write!(f, "//{}:{}", self.package, self.name)
    }
}

fn parse(text: &str, current_package: &str) -> Result<Label, LabelProblem> {
    if text.is_empty() {
        return Err(LabelProblem::Empty);
    }
    let (repo, rest) = match text.strip_prefix('@') {
        Some(after) => {
            let after = after.strip_prefix('@').unwrap_or(after);
            match after.find("//") {
                Some(i) => (Some(&after[..i]), &after[i..]),
                // `@repo` alone is `@repo//:repo`.
                None => {
                    check_repo(after)?;
                    if after.is_empty() {
                        return Err(LabelProblem::BadRepo(String::new()));
                    }
                    return Ok(Label::new(after, "", after));
                }
            }
        }
        None => (None, text),
    };
    if let Some(repo) = repo {
        check_repo(repo)?;
    }
    let repo = repo.unwrap_or("").to_string();

    if let Some(abs) = rest.strip_prefix("//") {
        let (package, name) = match abs.split_once(':') {
            Some((package, name)) => {
                if name.is_empty() {
                    return Err(LabelProblem::EmptyName);
                }
                (package, name)
            }
            None => {
                if abs.is_empty() {
                    return Err(LabelProblem::RootWithoutName);
                }
                let last = abs.rsplit('/').next().unwrap_or(abs);
                (abs, last)
            }
        };
        check_package(package)?;
        check_name(name)?;
        return Ok(Label::new(repo, package, name));
    }
    if let Some(name) = rest.strip_prefix(':') {
        if name.is_empty() {
            return Err(LabelProblem::EmptyName);
        }
        check_name(name)?;
        return Ok(Label::new("", current_package, name));
    }
    if rest.starts_with('/') || rest.contains(':') {
        return Err(LabelProblem::NotAbsolute);
    }
    check_name(rest)?;
    Ok(Label::new("", current_package, rest))
}

fn check_repo(repo: &str) -> Result<(), LabelProblem> {
    let ok = repo
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '~'));
    if ok && repo != "." && repo != ".." {
        Ok(())
    } else {
        Err(LabelProblem::BadRepo(repo.to_string()))
    }
}

fn check_package(package: &str) -> Result<(), LabelProblem> {
    if package.is_empty() {
        return Ok(());
    }
    for segment in package.split('/') {
        match segment {
            "" => return Err(LabelProblem::PackageEmptySegment),
            "." | ".." => return Err(LabelProblem::PackageDotSegment(segment.to_string())),
            _ => {}
        }
        if let Some(c) = segment.chars().find(|&c| !package_char(c)) {
            return Err(LabelProblem::PackageChar(c));
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), LabelProblem> {
    for segment in name.split('/') {
        match segment {
            "" => return Err(LabelProblem::NameEmptySegment),
            "." | ".." => return Err(LabelProblem::NameDotSegment(segment.to_string())),
            _ => {}
        }
        if let Some(c) = segment.chars().find(|&c| !name_char(c)) {
            return Err(LabelProblem::NameChar(c));
        }
    }
    Ok(())
}

/// Characters Bazel allows in package names (a subset of those allowed in target names).
fn package_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(
            c,
            '-' | '_' | '.' | '@' | '+' | '~' | '=' | ',' | '#' | '$' | '%' | '!'
        )
}

/// Characters Bazel allows in target names.
fn name_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(
            c,
            '!' | '%'
                | '-'
                | '@'
                | '^'
                | '_'
                | '#'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | ';'
                | '<'
                | '='
                | '>'
                | '?'
                | '['
                | ']'
                | '{'
                | '|'
                | '}'
                | '~'
                | '.'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for text in ["//a/b:c", "@repo//a:b", "//:c", "//a:b/c.txt"] {
            assert_eq!(
                Label::parse(text, "x").map(|l| l.to_string()),
                Ok(text.to_string())
            );
        }
    }
}
