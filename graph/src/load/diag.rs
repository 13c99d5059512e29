//! Load diagnostics: each carries the file:line:col it is about, and a package's load reports
//! all of them at once.

use std::fmt;

use starlark::codemap::FileSpan;

use crate::target::Location;

/// Who is to blame for a diagnostic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagnosticKind {
    /// The BUILD or `.bzl` file is wrong.
    User,
    /// The file system failed (unreadable file or directory).
    Environment,
    /// Kiln or the interpreter failed.
    Internal,
}

/// One problem found while loading a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is, when it is in a file.
    pub location: Option<Location>,
    /// What is wrong (capitalised, names in backticks, no trailing period).
    pub message: String,
    /// Who is to blame.
    pub kind: DiagnosticKind,
}

impl Diagnostic {
    /// A user error at `location`.
    pub fn user(location: Option<Location>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location,
            message: message.into(),
            kind: DiagnosticKind::User,
        }
    }

    /// Converts an interpreter error, keeping its span.
    pub(crate) fn from_starlark(err: &starlark::Error) -> Diagnostic {
        let kind = match err.kind() {
            starlark::ErrorKind::Internal(_) => DiagnosticKind::Internal,
            _ => DiagnosticKind::User,
        };
        let message = match err.kind() {
            starlark::ErrorKind::Fail(e) => format!("fail: {}", e.to_string().trim()),
            _ => match err.span().and_then(unknown_call) {
                Some(name) => format!(
                    "`{name}` is not a rule Kiln provides (nor a function defined or loaded here)"
                ),
                None => format!("{:#}", err.without_diagnostic()).trim().to_string(),
            },
        };
        Diagnostic {
            location: err.span().map(location_of),
            message,
            kind,
        }
    }
}

/// The name of an undefined variable that the failing code calls (`cc_library(...)`), so the
/// diagnostic can say that Kiln lacks the rule rather than just the variable.
fn unknown_call(span: &FileSpan) -> Option<String> {
    let name = span.source_span();
    let is_ident = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    let after = span.file.source().get(span.span.end().get() as usize..)?;
    (is_ident && after.trim_start().starts_with('(')).then(|| name.to_string())
}

/// The 1-based start of a span.
pub(crate) fn location_of(span: &FileSpan) -> Location {
    let pos = span.resolve_span().begin;
    Location {
        file: span.filename().to_string(),
        line: u32::try_from(pos.line + 1).unwrap_or(u32::MAX),
        column: u32::try_from(pos.column + 1).unwrap_or(u32::MAX),
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "error: {}", self.message)
    }
}

/// Why a package failed to load: one or more diagnostics, printed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors {
    /// The package, e.g. `a/b`.
    pub package: String,
    /// At least one diagnostic, in the order they were found.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
