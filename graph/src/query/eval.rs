//! Evaluating a parsed [`Expr`] over the target graph, which is discovered lazily: a node's package
//! is loaded (through [`QueryEnv`]) only when a pattern names it or an edge reaches it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use regex::Regex;

use super::parse::{Expr, SetOp};
use super::{Node, QueryEnv, QueryError};
use crate::label::Label;
use crate::load::Package;
use crate::pattern::Pattern;
use crate::target::AttrValue;

/// A set of targets, ordered by label.
pub type TargetSet = BTreeSet<Label>;

/// The part of the target graph seen so far.
pub struct Graph<'e> {
    env: &'e mut dyn QueryEnv,
    nodes: BTreeMap<Label, Node>,
    edges: HashMap<Label, Vec<Label>>,
    /// Output file name → generating rule, per package.
    outputs: HashMap<String, HashMap<String, Label>>,
}

/// Whether an attribute contributes edges: not `visibility` nor the constraint attributes.
pub fn is_dependency_attr(name: &str) -> bool {
    name != "visibility" && !name.ends_with("compatible_with") && name != "restricted_to"
}

impl<'e> Graph<'e> {
    /// An empty graph over `env`.
    pub fn new(env: &'e mut dyn QueryEnv) -> Self {
        Graph {
            env,
            nodes: BTreeMap::new(),
            edges: HashMap::new(),
            outputs: HashMap::new(),
        }
    }

    /// The node of `label`, which must have been resolved.
    pub fn node(&self, label: &Label) -> &Node {
        &self.nodes[label]
    }

    fn package(&mut self, name: &str) -> Result<Arc<Package>, QueryError> {
        self.env.package(name).map_err(QueryError::Evaluation)
    }

    /// Makes `label` a node: a rule of its package, else an output some rule declares, else a
    /// source file.
    fn resolve(&mut self, label: &Label) -> Result<(), QueryError> {
        if self.nodes.contains_key(label) {
            return Ok(());
        }
        let node = if !label.is_main_repo() {
            Node::SourceFile(label.clone())
        } else {
            let package = self.package(&label.package)?;
            if let Some(target) = package.targets.get(&label.name) {
                Node::Rule(target.clone())
            } else if let Some(rule) = self.generating_rule(&package, &label.name) {
                Node::GeneratedFile {
                    label: label.clone(),
                    rule,
                }
            } else {
                Node::SourceFile(label.clone())
            }
        };
        self.nodes.insert(label.clone(), node);
        Ok(())
    }

    fn generating_rule(&mut self, package: &Package, name: &str) -> Option<Label> {
        if !self.outputs.contains_key(&package.name) {
            let mut map = HashMap::new();
            for target in package.targets.values() {
                for out in self.env.declared_outputs(target) {
                    map.insert(out, target.label.clone());
                }
            }
            self.outputs.insert(package.name.clone(), map);
        }
        self.outputs[&package.name].get(name).cloned()
    }

    /// The direct dependencies of a resolved node, sorted; each is resolved too.
    pub fn deps_of(&mut self, label: &Label) -> Result<Vec<Label>, QueryError> {
        if let Some(deps) = self.edges.get(label) {
            return Ok(deps.clone());
        }
        self.resolve(label)?;
        let deps = direct_deps(&self.nodes[label]);
        for dep in &deps {
            self.resolve(dep)?;
        }
        self.edges.insert(label.clone(), deps.clone());
        Ok(deps)
    }

    /// Evaluates `expr`.
    pub fn eval(&mut self, expr: &Expr) -> Result<TargetSet, QueryError> {
        match expr {
            Expr::Pattern(pattern) => self.pattern(pattern),
            Expr::Set(patterns) => {
                let mut out = TargetSet::new();
                for p in patterns {
                    out.extend(self.pattern(p)?);
                }
                Ok(out)
            }
            Expr::Binary(op, left, right) => {
                let (left, right) = (self.eval(left)?, self.eval(right)?);
                Ok(match op {
                    SetOp::Union => &left | &right,
                    SetOp::Except => &left - &right,
                    SetOp::Intersect => &left & &right,
                })
            }
            Expr::Deps(x, depth) => {
                let roots = self.eval(x)?;
                self.forward(&roots, *depth)
            }
            Expr::Rdeps(universe, x, depth) => {
                let universe = self.eval(universe)?;
                let x = self.eval(x)?;
                let closure = self.forward(&universe, None)?;
                let reverse = self.reverse_edges(&closure)?;
                let roots: TargetSet = &x & &closure;
                Ok(walk(&roots, *depth, |l| {
                    reverse.get(l).cloned().unwrap_or_default()
                }))
            }
            Expr::Kind(re, x) => {
                let set = self.eval(x)?;
                Ok(set
                    .into_iter()
                    .filter(|l| re.is_match(&self.nodes[l].kind()))
                    .collect())
            }
            Expr::Filter(re, x) => Ok(self
                .eval(x)?
                .into_iter()
                .filter(|l| re.is_match(&l.to_string()))
                .collect()),
            Expr::Attr(name, re, x) => {
                let set = self.eval(x)?;
                Ok(set
                    .into_iter()
                    .filter(|l| attr_matches(&self.nodes[l], name, re))
                    .collect())
            }
            Expr::Labels(attr, x) => {
                let set = self.eval(x)?;
                let mut out = TargetSet::new();
                for label in set {
                    if let Node::Rule(target) = &self.nodes[&label] {
                        out.extend(target.attrs.get(attr).map(value_labels).unwrap_or_default());
                    }
                }
                for label in &out {
                    self.resolve(label)?;
                }
                Ok(out)
            }
            Expr::Allpaths(from, to) => {
                let (from, to) = (self.eval(from)?, self.eval(to)?);
                let closure = self.forward(&from, None)?;
                let reverse = self.reverse_edges(&closure)?;
                let ends: TargetSet = &to & &closure;
                Ok(walk(&ends, None, |l| {
                    reverse.get(l).cloned().unwrap_or_default()
                }))
            }
            Expr::Somepath(from, to) => {
                let (from, to) = (self.eval(from)?, self.eval(to)?);
                self.somepath(&from, &to)
            }
        }
    }

    /// Everything reachable from `roots` within `depth` edges (all of it when `None`).
    fn forward(&mut self, roots: &TargetSet, depth: Option<u32>) -> Result<TargetSet, QueryError> {
        let mut seen = roots.clone();
        let mut queue: VecDeque<(Label, u32)> = roots.iter().map(|l| (l.clone(), 0)).collect();
        while let Some((label, d)) = queue.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for dep in self.deps_of(&label)? {
                if seen.insert(dep.clone()) {
                    queue.push_back((dep, d + 1));
                }
            }
        }
        Ok(seen)
    }

    /// Reverse edges within a closed set.
    fn reverse_edges(
        &mut self,
        closure: &TargetSet,
    ) -> Result<HashMap<Label, Vec<Label>>, QueryError> {
        let mut reverse: HashMap<Label, Vec<Label>> = HashMap::new();
        for label in closure {
            for dep in self.deps_of(label)? {
                reverse.entry(dep).or_default().push(label.clone());
            }
        }
        Ok(reverse)
    }

    /// One shortest path from some node of `from` to some node of `to` (empty when none).
    fn somepath(&mut self, from: &TargetSet, to: &TargetSet) -> Result<TargetSet, QueryError> {
        let mut parent: HashMap<Label, Option<Label>> =
            from.iter().map(|l| (l.clone(), None)).collect();
        let mut queue: VecDeque<Label> = from.iter().cloned().collect();
        while let Some(label) = queue.pop_front() {
            if to.contains(&label) {
                let mut path = TargetSet::new();
                let mut at = Some(label);
                while let Some(l) = at {
                    at = parent[&l].clone();
                    path.insert(l);
                }
                return Ok(path);
            }
            for dep in self.deps_of(&label)? {
                if !parent.contains_key(&dep) {
                    parent.insert(dep.clone(), Some(label.clone()));
                    queue.push_back(dep);
                }
            }
        }
        Ok(TargetSet::new())
    }

    /// The targets a pattern names. Wildcards take every rule target of the packages they cover
    /// (`manual` ones too, as Bazel's query does); a single label may also name a file.
    fn pattern(&mut self, pattern: &Pattern) -> Result<TargetSet, QueryError> {
        let packages: Vec<String> = match pattern {
            Pattern::Target(label) => return self.single(label),
            Pattern::AllInPackage(name) => vec![name.clone()],
            Pattern::Recursive(prefix) => {
                let all = self.env.packages().map_err(QueryError::Evaluation)?;
                let under: Vec<String> = all
                    .into_iter()
                    .filter(|p| pattern.covers_package(p))
                    .collect();
                if under.is_empty() {
                    return Err(QueryError::Evaluation(format!(
                        "No packages found beneath `//{prefix}` for the pattern `{pattern}`"
                    )));
                }
                under
            }
        };
        let mut out = TargetSet::new();
        for name in packages {
            let package = self.package(&name)?;
            for target in package.targets.values() {
                self.nodes
                    .entry(target.label.clone())
                    .or_insert_with(|| Node::Rule(target.clone()));
                out.insert(target.label.clone());
            }
        }
        Ok(out)
    }

    fn single(&mut self, label: &Label) -> Result<TargetSet, QueryError> {
        self.resolve(label)?;
        if let Node::SourceFile(_) = &self.nodes[label] {
            let package = self.package(&label.package)?;
            let path = label.package_dir().join(&label.name);
            if !package.exported_files.contains_key(&label.name)
                && !self.env.file_exists(&path.to_string_lossy())
            {
                self.nodes.remove(label);
                return Err(QueryError::Evaluation(format!(
                    "No such target `{label}`: no rule, output or source file named `{}` in package `//{}`",
                    label.name, label.package
                )));
            }
        }
        Ok(TargetSet::from([label.clone()]))
    }
}

/// The labels a node points to, sorted, without loading anything: a rule's attribute labels
/// (see [`is_dependency_attr`]), a generated file's rule.
pub fn direct_deps(node: &Node) -> Vec<Label> {
    match node {
        Node::Rule(target) => {
            let mut set = BTreeSet::new();
            for (name, value) in &target.attrs {
                if is_dependency_attr(name) {
                    set.extend(value_labels(value));
                }
            }
            set.into_iter().collect()
        }
        Node::GeneratedFile { rule, .. } => vec![rule.clone()],
        Node::SourceFile(_) => Vec::new(),
    }
}

/// Labels an attribute value references.
fn value_labels(value: &AttrValue) -> Vec<Label> {
    match value {
        AttrValue::Label(l) => vec![l.clone()],
        AttrValue::LabelList(v) => v.clone(),
        AttrValue::LabelKeyedStringDict(v) => v.iter().map(|(l, _)| l.clone()).collect(),
        _ => Vec::new(),
    }
}

/// Breadth-first closure of `roots` along `next`, within `depth` steps.
fn walk(roots: &TargetSet, depth: Option<u32>, next: impl Fn(&Label) -> Vec<Label>) -> TargetSet {
    let mut seen = roots.clone();
    let mut queue: VecDeque<(Label, u32)> = roots.iter().map(|l| (l.clone(), 0)).collect();
    while let Some((label, d)) = queue.pop_front() {
        if depth.is_some_and(|max| d >= max) {
            continue;
        }
        for n in next(&label) {
            if seen.insert(n.clone()) {
                queue.push_back((n, d + 1));
            }
        }
    }
    seen
}

/// `attr(name, re, x)`: whether a rule has attribute `name` and its value, as Bazel's query
/// writes it (lists as `[a, b]`, booleans as `0`/`1`), contains a match of `re`.
fn attr_matches(node: &Node, name: &str, re: &Regex) -> bool {
    let Node::Rule(target) = node else {
        return false;
    };
    let text = match (name, target.attrs.get(name)) {
        ("name", _) => target.label.name.clone(),
        (_, Some(value)) => attr_text(value),
        (_, None) => return false,
    };
    re.is_match(&text)
}

fn attr_text(value: &AttrValue) -> String {
    let list = |items: Vec<String>| format!("[{}]", items.join(", "));
    match value {
        AttrValue::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::String(s) => s.clone(),
        AttrValue::Label(l) => l.to_string(),
        AttrValue::StringList(v) => list(v.clone()),
        AttrValue::LabelList(v) => list(v.iter().map(Label::to_string).collect()),
        AttrValue::StringDict(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        AttrValue::LabelKeyedStringDict(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
