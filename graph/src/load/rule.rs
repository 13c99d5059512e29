//! Rule calls: a Starlark callable per [`RuleSchema`] that checks and converts its keyword
//! arguments into a [`Target`] of the package under construction.
//!
//! Problems with a call (unknown or missing attributes, wrong types, bad labels, a duplicate name)
//! are recorded as diagnostics at the call site and evaluation continues, so one load reports all
//! of them, as Bazel does.

use std::collections::BTreeMap;
use std::fmt;

use allocative::Allocative;
use starlark::eval::{Arguments, Evaluator};
use starlark::starlark_simple_value;
use starlark::values::dict::DictRef;
use starlark::values::list_or_tuple::UnpackListOrTuple;
use starlark::values::{
    starlark_value, NoSerialize, ProvidesStaticType, StarlarkPagable, StarlarkValue, UnpackValue,
    Value,
};

use super::context::{call_site, context, package, target_site, user_error};
use super::diag::Diagnostic;
use crate::label::Label;
use crate::rule_schema::{AttrKind, RuleSchema};
use crate::target::{AttrValue, Target};

/// A callable rule, e.g. `genrule`. A no-op rule (Gazelle's `gazelle`, `config_setting`) checks
/// only that it was given a name and records nothing.
#[derive(Debug, ProvidesStaticType, NoSerialize, StarlarkPagable, Allocative)]
pub(crate) struct RuleFunction {
    pub name: String,
    pub noop: bool,
}
starlark_simple_value!(RuleFunction);

impl fmt::Display for RuleFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<rule {}>", self.name)
    }
}

#[starlark_value(type = "rule")]
impl<'v> StarlarkValue<'v> for RuleFunction {
    fn invoke(
        &self,
        _me: Value<'v>,
        args: &Arguments<'v, '_>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Value<'v>> {
        let ctx = context(eval)?;
        let pkg = package(ctx, &self.name)?;
        if args.positions(eval.heap())?.next().is_some() {
            return Err(user_error(format!(
                "`{}` takes keyword arguments only, as in `{}(name = \"...\", ...)`",
                self.name, self.name
            )));
        }
        let kwargs = args.names_map()?;
        let location = call_site(eval, &pkg.build_file);
        let report = |message: String| {
            pkg.state
                .borrow_mut()
                .diagnostics
                .push(Diagnostic::user(Some(location.clone()), message))
        };
        let name = match kwargs.iter().find(|(k, _)| k.as_str() == "name") {
            Some((_, v)) => match v.unpack_str() {
                Some(name) => name.to_string(),
                None => {
                    report(format!(
                        "`{}` attribute `name`: expected a string, got `{}`",
                        self.name,
                        v.get_type()
                    ));
                    return Ok(Value::new_none());
                }
            },
            None => {
                report(format!(
                    "`{}` is missing mandatory attribute `name`",
                    self.name
                ));
                return Ok(Value::new_none());
            }
        };
        if let Err(e) = Label::parse(&format!(":{name}"), &pkg.name) {
            report(format!("`{}` attribute `name`: {e}", self.name));
            return Ok(Value::new_none());
        }
        if self.noop {
            return Ok(Value::new_none());
        }
        let Some(schema) = ctx.rules.iter().find(|r| r.name == self.name) else {
            return Err(user_error(format!(
                "`{}` is not a rule Kiln provides",
                self.name
            )));
        };
        let mut attrs = BTreeMap::new();
        let mut visibility = None;
        let mut ok = true;
        for (key, value) in kwargs.iter() {
            let key = key.as_str();
            if key == "name" {
                continue;
            }
            let Some(attr) = schema.attr(key) else {
                let known: Vec<String> = schema
                    .attr_names()
                    .iter()
                    .filter(|n| **n != "name")
                    .map(|n| format!("`{n}`"))
                    .collect();
                report(format!(
                    "`{}` has no attribute `{key}`; expected one of `name`, {}",
                    self.name,
                    known.join(", ")
                ));
                ok = false;
                continue;
            };
            match convert(attr.kind, *value, &pkg.name) {
                Ok(None) => {}
                Ok(Some(AttrValue::LabelList(labels))) if key == "visibility" => {
                    visibility = Some(labels)
                }
                Ok(Some(AttrValue::String(value)))
                    if !attr.one_of.is_empty() && !attr.one_of.contains(&value.as_str()) =>
                {
                    report(format!(
                        "`{}` attribute `{key}`: expected one of {}, got `{value}`",
                        self.name,
                        attr.one_of
                            .iter()
                            .map(|v| format!("`{v}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    ok = false;
                }
                Ok(Some(converted)) => {
                    if let Some(dup) = duplicate_label(&converted) {
                        report(format!(
                            "Label `{dup}` is duplicated in the `{key}` attribute of `{}` rule `{name}`",
                            self.name
                        ));
                        ok = false;
                    }
                    attrs.insert(key.to_string(), converted);
                }
                Err(problem) => {
                    report(format!("`{}` attribute `{key}`: {problem}", self.name));
                    ok = false;
                }
            }
        }
        for missing in missing_mandatory(schema, &attrs) {
            report(format!(
                "`{}` rule `{name}` is missing mandatory attribute `{missing}`",
                self.name
            ));
            ok = false;
        }
        let mut state = pkg.state.borrow_mut();
        if let Some(existing) = state.targets.get(&name) {
            let message = format!(
                "Target `{name}` is already declared at {}",
                existing.location
            );
            state
                .diagnostics
                .push(Diagnostic::user(Some(location), message));
            return Ok(Value::new_none());
        }
        if ok {
            let visibility = visibility
                .or_else(|| state.default_visibility.clone())
                .unwrap_or_else(|| vec![Label::new("", "visibility", "private")]);
            let target = Target {
                label: Label::new("", pkg.name.clone(), name.clone()),
                kind: self.name.clone(),
                attrs,
                visibility,
                location: target_site(eval, &pkg.build_file),
            };
            state.targets.insert(name, target);
        }
        Ok(Value::new_none())
    }
}

fn missing_mandatory<'s>(
    schema: &'s RuleSchema,
    attrs: &BTreeMap<String, AttrValue>,
) -> Vec<&'s str> {
    schema
        .attrs
        .iter()
        .filter(|a| a.mandatory && a.name != "name" && !attrs.contains_key(a.name))
        .map(|a| a.name)
        .collect()
}

fn duplicate_label(value: &AttrValue) -> Option<&Label> {
    let AttrValue::LabelList(labels) = value else {
        return None;
    };
    let mut seen = std::collections::BTreeSet::new();
    labels.iter().find(|l| !seen.insert(*l))
}

/// Converts `value` to an attribute of `kind`; `Ok(None)` for `None` (the attribute stays unset).
pub(crate) fn convert(
    kind: AttrKind,
    value: Value<'_>,
    package: &str,
) -> Result<Option<AttrValue>, String> {
    if value.is_none() {
        return Ok(None);
    }
    let got = || format!(", got `{}`", value.get_type());
    let label = |s: &str| Label::parse(s, package).map_err(|e| e.to_string());
    let converted = match kind {
        AttrKind::Bool => match (value.unpack_bool(), value.unpack_i32()) {
            (Some(b), _) => AttrValue::Bool(b),
            (None, Some(i @ (0 | 1))) => AttrValue::Bool(i == 1),
            _ => return Err(format!("expected a boolean (`True` or `False`){}", got())),
        },
        AttrKind::Int => match i64::unpack_value(value) {
            Ok(Some(i)) if value.unpack_bool().is_none() => AttrValue::Int(i),
            _ => return Err(format!("expected an integer that fits in 64 bits{}", got())),
        },
        AttrKind::String => match value.unpack_str() {
            Some(s) => AttrValue::String(s.to_string()),
            None => return Err(format!("expected a string{}", got())),
        },
        AttrKind::Label => match value.unpack_str() {
            Some(s) => AttrValue::Label(label(s)?),
            None => return Err(format!("expected a label string{}", got())),
        },
        AttrKind::StringList => AttrValue::StringList(
            strings(value).ok_or_else(|| format!("expected a list of strings{}", got()))?,
        ),
        AttrKind::LabelList => {
            let items = strings(value)
                .ok_or_else(|| format!("expected a list of label strings{}", got()))?;
            AttrValue::LabelList(items.iter().map(|s| label(s)).collect::<Result<_, _>>()?)
        }
        AttrKind::StringDict => {
            let pairs = string_pairs(value)
                .ok_or_else(|| format!("expected a dict of string to string{}", got()))?;
            AttrValue::StringDict(pairs.into_iter().collect())
        }
        AttrKind::LabelKeyedStringDict => {
            let pairs = string_pairs(value)
                .ok_or_else(|| format!("expected a dict of label string to string{}", got()))?;
            AttrValue::LabelKeyedStringDict(
                pairs
                    .into_iter()
                    .map(|(k, v)| Ok((label(&k)?, v)))
                    .collect::<Result<_, String>>()?,
            )
        }
    };
    Ok(Some(converted))
}

/// A list or tuple of strings.
fn strings(value: Value<'_>) -> Option<Vec<String>> {
    let items = UnpackListOrTuple::<Value>::unpack_value(value).ok()??;
    items
        .items
        .iter()
        .map(|v| v.unpack_str().map(str::to_string))
        .collect()
}

/// A dict of strings to strings, in insertion order.
fn string_pairs(value: Value<'_>) -> Option<Vec<(String, String)>> {
    let dict = DictRef::from_value(value)?;
    dict.iter()
        .map(|(k, v)| Some((k.unpack_str()?.to_string(), v.unpack_str()?.to_string())))
        .collect()
}
