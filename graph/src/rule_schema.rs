//! What the loader must know about a rule to accept a call to it: its name and its attributes'
//! types. Rule *implementations* live in `kiln-rules`; they hand their schemas to the loader.

/// The type of an attribute, which decides how the loader converts and checks a Starlark value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    /// `True`/`False` (ints 0/1 accepted, as Bazel does).
    Bool,
    /// An integer.
    Int,
    /// A string.
    String,
    /// A single label string, made absolute against the package.
    Label,
    /// A list of strings.
    StringList,
    /// A list of label strings, made absolute against the package.
    LabelList,
    /// A dict of string to string.
    StringDict,
    /// A dict of label string to string.
    LabelKeyedStringDict,
}

/// One attribute of a rule.
#[derive(Clone, Copy, Debug)]
pub struct AttrSchema {
    /// Attribute name as written in BUILD files.
    pub name: &'static str,
    /// Its type.
    pub kind: AttrKind,
    /// Whether a call without it is an error.
    pub mandatory: bool,
    /// For a string attribute, the values it may take (empty: any).
    pub one_of: &'static [&'static str],
}

impl AttrSchema {
    /// An optional attribute.
    pub const fn optional(name: &'static str, kind: AttrKind) -> Self {
        AttrSchema {
            name,
            kind,
            mandatory: false,
            one_of: &[],
        }
    }

    /// The same attribute, restricted to `values`.
    pub const fn one_of(self, values: &'static [&'static str]) -> Self {
        AttrSchema {
            one_of: values,
            ..self
        }
    }

    /// A mandatory attribute.
    pub const fn mandatory(name: &'static str, kind: AttrKind) -> Self {
        AttrSchema {
            name,
            kind,
            mandatory: true,
            one_of: &[],
        }
    }
}

/// The attributes every rule accepts besides its own (Bazel's common attributes).
pub const COMMON_ATTRS: &[AttrSchema] = &[
    AttrSchema::optional("visibility", AttrKind::LabelList),
    AttrSchema::optional("tags", AttrKind::StringList),
    AttrSchema::optional("testonly", AttrKind::Bool),
    AttrSchema::optional("deprecation", AttrKind::String),
    AttrSchema::optional("features", AttrKind::StringList),
    AttrSchema::optional("licenses", AttrKind::StringList),
    AttrSchema::optional("compatible_with", AttrKind::LabelList),
    AttrSchema::optional("target_compatible_with", AttrKind::LabelList),
    AttrSchema::optional("exec_compatible_with", AttrKind::LabelList),
    AttrSchema::optional("restricted_to", AttrKind::LabelList),
];

/// The attributes every test rule accepts (Bazel's common test attributes).
pub const TEST_ATTRS: &[AttrSchema] = &[
    AttrSchema::optional("size", AttrKind::String)
        .one_of(&["small", "medium", "large", "enormous"]),
    AttrSchema::optional("timeout", AttrKind::String)
        .one_of(&["short", "moderate", "long", "eternal"]),
    AttrSchema::optional("flaky", AttrKind::Bool),
    AttrSchema::optional("shard_count", AttrKind::Int),
    AttrSchema::optional("local", AttrKind::Bool),
    AttrSchema::optional("args", AttrKind::StringList),
    AttrSchema::optional("env", AttrKind::StringDict),
];

/// A rule the loader accepts calls to.
#[derive(Clone, Copy, Debug)]
pub struct RuleSchema {
    /// The rule's name, e.g. `genrule`.
    pub name: &'static str,
    /// Rule-specific attributes (the common ones are implied; test rules also get `TEST_ATTRS`).
    pub attrs: &'static [AttrSchema],
    /// Whether this is a test rule (`*_test`).
    pub test: bool,
    /// Whether the rule produces something `kiln run` can execute.
    pub executable: bool,
}

impl RuleSchema {
    /// Looks up an attribute among the rule's own, the common and (for tests) the test attributes.
    pub fn attr(&self, name: &str) -> Option<&AttrSchema> {
        let test_attrs: &[AttrSchema] = if self.test { TEST_ATTRS } else { &[] };
        self.attrs
            .iter()
            .chain(COMMON_ATTRS)
            .chain(test_attrs)
            .find(|a| a.name == name)
    }

    /// Every attribute [`RuleSchema::attr`] knows, sorted, for an error message.
    pub fn attr_names(&self) -> Vec<&'static str> {
        let test_attrs: &[AttrSchema] = if self.test { TEST_ATTRS } else { &[] };
        let mut names: Vec<&'static str> = self
            .attrs
            .iter()
            .chain(COMMON_ATTRS)
            .chain(test_attrs)
            .map(|a| a.name)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}
