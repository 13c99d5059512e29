//! The functions BUILD and `.bzl` files see besides the rules: `glob`, `package`,
//! `exports_files`, `select`, `package_name`, `repository_name`, `print`, `licenses`, and the
//! `native` module that gives macros the same functions and rules.

use starlark::environment::{GlobalsBuilder, LibraryExtension};
use starlark::eval::Evaluator;
use starlark::starlark_module;
use starlark::values::dict::DictRef;
use starlark::values::list_or_tuple::UnpackListOrTuple;
use starlark::values::none::NoneType;
use starlark::values::tuple::UnpackTuple;
use starlark::values::Value;

use super::context::{call_site, context, package, user_error};
use super::glob::{glob as expand_glob, GlobArgs};
use super::rule::{convert, RuleFunction};
use super::select::choose;
use crate::label::Label;
use crate::rule_schema::{AttrKind, RuleSchema};

/// No-op rules: accepted (with a `name`) and ignored.
const NOOP_RULES: &[&str] = &["config_setting", "gazelle", "gazelle_binary"];

/// The globals of every BUILD and `.bzl` file for this rule set.
pub(crate) fn globals(rules: &[RuleSchema]) -> starlark::environment::Globals {
    let mut builder = GlobalsBuilder::extended_by(&[
        LibraryExtension::StructType,
        LibraryExtension::Json,
        LibraryExtension::Typing,
    ]);
    package_functions(&mut builder);
    global_functions(&mut builder);
    set_rules(&mut builder, rules, &["config_setting"]);
    builder.namespace("native", |native| {
        package_functions(native);
        set_rules(native, rules, &["config_setting"]);
    });
    builder.build()
}

/// A callable for rule `name` (a no-op one for Gazelle and `config_setting`).
pub(crate) fn rule_value(name: &str) -> RuleFunction {
    RuleFunction {
        name: name.to_string(),
        noop: NOOP_RULES.contains(&name),
    }
}

fn set_rules(builder: &mut GlobalsBuilder, rules: &[RuleSchema], noops: &[&str]) {
    for rule in rules {
        builder.set(rule.name, rule_value(rule.name));
    }
    for name in noops {
        if !rules.iter().any(|r| r.name == *name) {
            builder.set(name, rule_value(name));
        }
    }
}

/// Renders a call's arguments the way `print` and `fail` do.
fn render(args: &[Value<'_>], sep: &str) -> String {
    let parts: Vec<String> = args
        .iter()
        .map(|v| {
            v.unpack_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_repr())
        })
        .collect();
    parts.join(sep)
}

/// Functions available both globally and under `native`.
#[starlark_module]
fn package_functions(builder: &mut GlobalsBuilder) {
    /// Files of the package matching `include` and not `exclude`, sorted.
    fn glob<'v>(
        include: UnpackListOrTuple<String>,
        #[starlark(require = named, default = UnpackListOrTuple::default())]
        exclude: UnpackListOrTuple<String>,
        #[starlark(require = named, default = 1)] exclude_directories: i32,
        #[starlark(require = named, default = true)] allow_empty: bool,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Vec<String>> {
        let ctx = context(eval)?;
        let pkg = package(ctx, "glob")?;
        let args = GlobArgs {
            include: include.items,
            exclude: exclude.items,
            exclude_directories: exclude_directories != 0,
        };
        let found = expand_glob(&mut pkg.listings.borrow_mut(), &pkg.name, &args)
            .map_err(|e| user_error(e.to_string()))?;
        if found.is_empty() && !allow_empty {
            return Err(user_error(format!(
                "`glob({:?})` matched nothing and `allow_empty = False`",
                args.include
            )));
        }
        Ok(found)
    }

    /// The package path, e.g. `a/b`.
    fn package_name<'v>(eval: &mut Evaluator<'v, '_, '_>) -> starlark::Result<String> {
        let ctx = context(eval)?;
        Ok(package(ctx, "package_name")?.name.clone())
    }

    /// The repository name: `@` for the main repository, as Bazel returns.
    fn repository_name<'v>(eval: &mut Evaluator<'v, '_, '_>) -> starlark::Result<String> {
        let ctx = context(eval)?;
        package(ctx, "repository_name")?;
        Ok("@".to_string())
    }

    /// Makes files of the package usable from other packages.
    fn exports_files<'v>(
        srcs: UnpackListOrTuple<String>,
        #[starlark(default = NoneType)] visibility: Value<'v>,
        #[starlark(default = NoneType)] licenses: Value<'v>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        let _ = licenses;
        let ctx = context(eval)?;
        let pkg = package(ctx, "exports_files")?;
        let location = call_site(eval, &pkg.build_file);
        let visibility = match convert(AttrKind::LabelList, visibility, &pkg.name) {
            Ok(Some(crate::target::AttrValue::LabelList(v))) => v,
            Ok(_) => vec![Label::new("", "visibility", "public")],
            Err(e) => {
                return Err(user_error(format!(
                    "`exports_files` attribute `visibility`: {e}"
                )))
            }
        };
        let mut state = pkg.state.borrow_mut();
        for src in srcs.items {
            Label::parse(&format!(":{src}"), &pkg.name).map_err(|e| user_error(e.to_string()))?;
            state
                .exported_files
                .insert(src, (visibility.clone(), location.clone()));
        }
        Ok(NoneType)
    }
}

/// Functions available globally only.
#[starlark_module]
fn global_functions(builder: &mut GlobalsBuilder) {
    /// Package-wide settings; only `default_visibility` has an effect in Kiln.
    fn package<'v>(
        #[starlark(kwargs)] kwargs: DictRef<'v>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        let ctx = context(eval)?;
        let pkg = package(ctx, "package")?;
        let mut state = pkg.state.borrow_mut();
        if state.package_called {
            return Err(user_error(
                "`package()` may be called only once per package",
            ));
        }
        if !state.targets.is_empty() {
            return Err(user_error(
                "`package()` must be called before any rule of the package",
            ));
        }
        state.package_called = true;
        for (key, value) in kwargs.iter() {
            if key.unpack_str() == Some("default_visibility") {
                match convert(AttrKind::LabelList, value, &pkg.name) {
                    Ok(Some(crate::target::AttrValue::LabelList(v))) => {
                        state.default_visibility = Some(v)
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(user_error(format!(
                            "`package` attribute `default_visibility`: {e}"
                        )))
                    }
                }
            }
        }
        Ok(NoneType)
    }

    /// Chooses the branch for the host platform (Kiln has one configuration).
    fn select<'v>(
        #[starlark(require = pos)] x: DictRef<'v>,
        #[starlark(require = named, default = "")] no_match_error: &str,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Value<'v>> {
        let ctx = context(eval)?;
        let current = ctx.package.as_ref().map(|p| p.name.as_str()).unwrap_or("");
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for (key, value) in x.iter() {
            let Some(text) = key.unpack_str() else {
                return Err(user_error(format!(
                    "`select()` keys must be label strings, got `{}`",
                    key.get_type()
                )));
            };
            keys.push(
                Label::parse(text, current)
                    .map_err(|e| user_error(format!("`select()` key: {e}")))?,
            );
            values.push(value);
        }
        match choose(&keys, ctx.platform) {
            Ok(i) => Ok(values[i]),
            Err(_) if !no_match_error.is_empty() => Err(user_error(no_match_error.to_string())),
            Err(e) => Err(user_error(e)),
        }
    }

    /// Prints its arguments to stderr as a `DEBUG` line with the caller's location.
    fn print<'v>(
        #[starlark(args)] args: UnpackTuple<Value<'v>>,
        #[starlark(require = named, default = " ")] sep: &str,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        let location = call_site(eval, "<unknown>");
        eprintln!("DEBUG: {location}: {}", render(&args.items, sep));
        Ok(NoneType)
    }

    /// Accepted and ignored, as Bazel ignores it.
    fn licenses<'v>(
        #[starlark(require = pos)] license_types: Value<'v>,
    ) -> starlark::Result<NoneType> {
        let _ = license_types;
        Ok(NoneType)
    }
}
