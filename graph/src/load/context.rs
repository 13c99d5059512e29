//! What native functions see of the evaluation in progress: the workspace, the rule schemas, the
//! host platform and, while a BUILD file is evaluated, the package being built up. It travels in
//! `Evaluator::extra`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use starlark::eval::Evaluator;
use starlark::values::ProvidesStaticType;

use super::diag::{location_of, Diagnostic};
use super::glob::Listings;
use super::HostPlatform;
use crate::label::Label;
use crate::rule_schema::RuleSchema;
use crate::target::{Location, Target};

/// The evaluation's context.
#[derive(ProvidesStaticType)]
pub(crate) struct EvalContext<'a> {
    pub rules: &'a [RuleSchema],
    pub platform: &'a HostPlatform,
    /// The package under construction; `None` while a `.bzl` file's top level runs.
    pub package: Option<PackageBuild<'a>>,
}

/// A package under construction.
pub(crate) struct PackageBuild<'a> {
    /// Package path, e.g. `a/b`.
    pub name: String,
    /// Workspace-relative BUILD file path.
    pub build_file: String,
    pub state: RefCell<PackageState>,
    pub listings: RefCell<Listings<'a>>,
}

/// What the BUILD file has declared so far.
#[derive(Default)]
pub(crate) struct PackageState {
    pub targets: BTreeMap<String, Target>,
    pub default_visibility: Option<Vec<Label>>,
    pub exported_files: BTreeMap<String, (Vec<Label>, Location)>,
    /// Errors that do not stop evaluation (Bazel keeps going to report them all).
    pub diagnostics: Vec<Diagnostic>,
    pub package_called: bool,
}

/// A user error raised inside a native function; the interpreter adds the call site.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UserError(pub String);

/// Shorthand for a user error as an interpreter error.
pub(crate) fn user_error(message: impl Into<String>) -> starlark::Error {
    starlark::Error::new_other(UserError(message.into()))
}

/// The context of the evaluation `eval` runs.
pub(crate) fn context<'a, 'e>(
    eval: &Evaluator<'_, 'a, 'e>,
) -> starlark::Result<&'a EvalContext<'e>> {
    eval.extra
        .and_then(|extra| extra.downcast_ref::<EvalContext<'e>>())
        .ok_or_else(|| starlark::Error::new_other(UserError("Kiln loader context missing".into())))
}

/// The package under construction, or an error naming `function` when a `.bzl` file's top level
/// calls it.
pub(crate) fn package<'c, 'a>(
    ctx: &'c EvalContext<'a>,
    function: &str,
) -> starlark::Result<&'c PackageBuild<'a>> {
    ctx.package.as_ref().ok_or_else(|| {
        user_error(format!(
            "`{function}` can only be called while a BUILD file is evaluated (from the BUILD file or a macro it calls), not at the top level of a `.bzl` file"
        ))
    })
}

/// Where the native function being run was called from.
pub(crate) fn call_site(eval: &Evaluator<'_, '_, '_>, fallback_file: &str) -> Location {
    eval.call_stack_top_location()
        .as_ref()
        .map(location_of)
        .unwrap_or_else(|| Location {
            file: fallback_file.to_string(),
            line: 1,
            column: 1,
        })
}

/// Where a rule call declares its target: the outermost call in the BUILD file (a macro's caller,
/// as Bazel's `generator_location`), else the innermost call site.
pub(crate) fn target_site(eval: &Evaluator<'_, '_, '_>, build_file: &str) -> Location {
    eval.call_stack()
        .into_frames()
        .iter()
        .filter_map(|frame| frame.location.as_ref())
        .find(|span| span.filename() == build_file)
        .map(location_of)
        .unwrap_or_else(|| call_site(eval, build_file))
}
