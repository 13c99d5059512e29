//! Rendering a [`QueryResult`] as Bazel's `--output` formats: `label`, `label_kind`, `build`
//! (BUILD-file syntax with a `# file:line:col` comment per rule) and `graph` (Graphviz dot).
//! Every format lists nodes in label order, so output is deterministic.

use std::fmt::Write;

use super::{Node, QueryResult};
use crate::label::Label;
use crate::target::AttrValue;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One label per line.
    Label,
    /// `genrule rule //a:b`, `source file //a:x.txt`.
    LabelKind,
    /// BUILD-file syntax.
    Build,
    /// Graphviz dot.
    Graph,
}

/// Renders `result`; `root` is prefixed to the workspace-relative BUILD file paths in `build`
/// output (the workspace's absolute path, for locations an editor can open).
pub fn render(result: &QueryResult, format: OutputFormat, root: &str) -> String {
    let mut out = String::new();
    match format {
        OutputFormat::Label => {
            for node in &result.nodes {
                let _ = writeln!(out, "{}", node.label());
            }
        }
        OutputFormat::LabelKind => {
            for node in &result.nodes {
                let _ = writeln!(out, "{} {}", node.kind(), node.label());
            }
        }
        OutputFormat::Build => {
            for node in &result.nodes {
                build(&mut out, node, root);
            }
        }
        OutputFormat::Graph => {
            out.push_str("digraph mygraph {\n  node [shape=box];\n");
            for node in &result.nodes {
                let _ = writeln!(out, "  {}", quote(&node.label().to_string()));
            }
            for (from, to) in &result.edges {
                let _ = writeln!(
                    out,
                    "  {} -> {}",
                    quote(&from.to_string()),
                    quote(&to.to_string())
                );
            }
            out.push_str("}\n");
        }
    }
    out
}

fn build(out: &mut String, node: &Node, root: &str) {
    match node {
        Node::Rule(target) => {
            let file = if root.is_empty() {
                target.location.to_string()
            } else {
                format!("{}/{}", root.trim_end_matches('/'), target.location)
            };
            let _ = writeln!(out, "# {file}");
            let _ = writeln!(out, "{}(", target.kind);
            let _ = writeln!(out, "  name = {},", quote(&target.label.name));
            for (name, value) in &target.attrs {
                let _ = writeln!(out, "  {name} = {},", starlark(value));
            }
            let private = [Label::new("", "visibility", "private")];
            if target.visibility != private {
                let _ = writeln!(
                    out,
                    "  visibility = {},",
                    list(target.visibility.iter().map(|l| quote(&l.to_string())))
                );
            }
            out.push_str(")\n\n");
        }
        Node::SourceFile(label) => {
            let _ = writeln!(out, "# {label} (source file)\n");
        }
        Node::GeneratedFile { label, rule } => {
            let _ = writeln!(out, "# {label} (generated file of {rule})\n");
        }
    }
}

/// A value as Starlark source.
fn starlark(value: &AttrValue) -> String {
    let dict = |items: Vec<(String, &String)>| {
        let body: Vec<String> = items
            .into_iter()
            .map(|(k, v)| format!("{}: {}", quote(&k), quote(v)))
            .collect();
        format!("{{{}}}", body.join(", "))
    };
    match value {
        AttrValue::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::String(s) => quote(s),
        AttrValue::Label(l) => quote(&l.to_string()),
        AttrValue::StringList(v) => list(v.iter().map(|s| quote(s))),
        AttrValue::LabelList(v) => list(v.iter().map(|l| quote(&l.to_string()))),
        AttrValue::StringDict(d) => dict(d.iter().map(|(k, v)| (k.clone(), v)).collect()),
        AttrValue::LabelKeyedStringDict(d) => {
            dict(d.iter().map(|(k, v)| (k.to_string(), v)).collect())
        }
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

/// A double-quoted string with Starlark (and dot) escapes.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
