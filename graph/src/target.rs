//! Targets as loading leaves them: a rule kind, a name, typed attribute values and the place in the
//! BUILD file that declared them. Analysis (in `kiln-rules`) turns these into actions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::label::Label;

/// A position in a BUILD or `.bzl` file, 1-based, with the file's workspace-relative path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// Workspace-relative path of the file, e.g. `pkg/BUILD.bazel`.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// An attribute value after `select()` has been resolved for the host platform and labels have been
/// made absolute against the declaring package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrValue {
    /// A boolean (`True`/`False`, or 0/1 for Bazel's boolean-as-int attributes).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A plain string.
    String(String),
    /// A label, resolved against the declaring package.
    Label(Label),
    /// A list of strings.
    StringList(Vec<String>),
    /// A list of labels, resolved against the declaring package.
    LabelList(Vec<Label>),
    /// A dictionary from string to string.
    StringDict(BTreeMap<String, String>),
    /// A dictionary from label to string (e.g. `x_defs` keyed by label is not this; `rustc_env`
    /// is a `StringDict`); used by attributes such as `aliases`.
    LabelKeyedStringDict(Vec<(Label, String)>),
}

/// One rule instance declared in a BUILD file (or a file made visible by `exports_files`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The target's label.
    pub label: Label,
    /// The rule kind, e.g. `genrule`.
    pub kind: String,
    /// Attributes the BUILD file set, plus defaults from the rule schema for the ones it did not.
    pub attrs: BTreeMap<String, AttrValue>,
    /// Effective visibility: the target's own `visibility`, else the package default.
    pub visibility: Vec<Label>,
    /// Where the rule was called.
    pub location: Location,
}

impl Target {
    /// The attribute `name` as a string, if it is set and a string.
    pub fn string(&self, name: &str) -> Option<&str> {
        match self.attrs.get(name) {
            Some(AttrValue::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The attribute `name` as a list of labels (a single label counts as a list of one).
    pub fn labels(&self, name: &str) -> Vec<Label> {
        match self.attrs.get(name) {
            Some(AttrValue::LabelList(v)) => v.clone(),
            Some(AttrValue::Label(l)) => vec![l.clone()],
            Some(AttrValue::LabelKeyedStringDict(v)) => v.iter().map(|(l, _)| l.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// The attribute `name` as a list of strings (empty when unset).
    pub fn strings(&self, name: &str) -> Vec<String> {
        match self.attrs.get(name) {
            Some(AttrValue::StringList(v)) => v.clone(),
            Some(AttrValue::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// The attribute `name` as a boolean (false when unset).
    pub fn bool(&self, name: &str) -> bool {
        match self.attrs.get(name) {
            Some(AttrValue::Bool(b)) => *b,
            Some(AttrValue::Int(i)) => *i != 0,
            _ => false,
        }
    }

    /// The attribute `name` as a string dictionary (empty when unset).
    pub fn string_dict(&self, name: &str) -> BTreeMap<String, String> {
        match self.attrs.get(name) {
            Some(AttrValue::StringDict(d)) => d.clone(),
            _ => BTreeMap::new(),
        }
    }

    /// The target's tags.
    pub fn tags(&self) -> Vec<String> {
        self.strings("tags")
    }
}
