//! `kiln query`: Bazel's query language over the *target* graph (not actions).
//!
//! Nodes are rule targets, plus file targets (source files, and generated files that point to
//! their generating rule) for every label an attribute or a pattern names. A rule has an edge to
//! every label in its attributes except `visibility` and the constraint attributes
//! (`*compatible_with`, `restricted_to`).
//!
//! The core does no I/O: packages come in through [`QueryEnv`], so the CLI serves them from the
//! engine's memoized loader and tests from an in-memory fixture. [`run`] parses, evaluates and
//! returns a [`QueryResult`]; [`output`] renders it as `label`, `label_kind`, `build` or `graph`.
//!
//! Supported: target patterns, `deps(x[, depth])`, `rdeps(u, x[, depth])`, `kind(re, x)`,
//! `filter(re, x)`, `attr(name, re, x)`, `labels(attr, x)`, `allpaths(a, b)`, `somepath(a, b)`,
//! `set(...)`, and `+`/`union`, `-`/`except`, `^`/`intersect` (left-associative, equal
//! precedence, as in Bazel). Not supported: `let`, `tests`, `siblings`, `buildfiles`.

mod eval;
pub mod output;
mod parse;

use std::sync::Arc;

use crate::label::Label;
use crate::load::Package;
use crate::target::Target;

pub use self::eval::is_dependency_attr;

/// Where the query gets packages from.
pub trait QueryEnv {
    /// Every package of the workspace (for `//...`), sorted.
    fn packages(&mut self) -> Result<Vec<String>, String>;
    /// The package `name`, loaded; the error is the loader's message.
    fn package(&mut self, name: &str) -> Result<Arc<Package>, String>;
    /// Output files `target` declares, relative to its package (e.g. genrule `outs`).
    fn declared_outputs(&self, target: &Target) -> Vec<String>;
    /// Whether a workspace-relative source file exists (for a pattern naming a file).
    fn file_exists(&self, path: &str) -> bool;
}

/// A query that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The expression is malformed (a bad command line).
    #[error("Invalid query expression at column {column}: {message}")]
    Syntax {
        /// 1-based column (in characters) of the offending token.
        column: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The expression is fine but evaluating it failed (a package did not load, a target is
    /// missing).
    #[error("{0}")]
    Evaluation(String),
}

/// A node of the target graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A rule target.
    Rule(Target),
    /// A source file (or a label in another repository, which Kiln does not load).
    SourceFile(Label),
    /// A file a rule declares as an output.
    GeneratedFile {
        /// The file's label.
        label: Label,
        /// The rule that generates it.
        rule: Label,
    },
}

impl Node {
    /// The node's label.
    pub fn label(&self) -> &Label {
        match self {
            Node::Rule(target) => &target.label,
            Node::SourceFile(label) | Node::GeneratedFile { label, .. } => label,
        }
    }

    /// Bazel's kind string: `genrule rule`, `source file` or `generated file`.
    pub fn kind(&self) -> String {
        match self {
            Node::Rule(target) => format!("{} rule", target.kind),
            Node::SourceFile(_) => "source file".to_string(),
            Node::GeneratedFile { .. } => "generated file".to_string(),
        }
    }
}

/// What a query selected: its nodes sorted by label, and the edges among them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// The selected nodes, sorted by label.
    pub nodes: Vec<Node>,
    /// Edges `(from, to)` whose ends are both selected, sorted.
    pub edges: Vec<(Label, Label)>,
}

/// Parses and evaluates `expression`; relative patterns are relative to `cwd_package`.
pub fn run(
    expression: &str,
    cwd_package: &str,
    env: &mut dyn QueryEnv,
) -> Result<QueryResult, QueryError> {
    let expr = parse::parse(expression, cwd_package)?;
    let mut graph = eval::Graph::new(env);
    let selected = graph.eval(&expr)?;
    let mut edges = Vec::new();
    let nodes: Vec<Node> = selected.iter().map(|l| graph.node(l).clone()).collect();
    for node in &nodes {
        for dep in eval::direct_deps(node) {
            if selected.contains(&dep) {
                edges.push((node.label().clone(), dep));
            }
        }
    }
    Ok(QueryResult { nodes, edges })
}
