//! Bazel's "Make" variable expansion for `genrule` commands: `$(SRCS)`, `$(OUTS)`, `$<`, `$@`,
//! `$(@D)`, `$(RULEDIR)`, `$(location x)`, `$(locations x)`, `$(execpath x)`, `$(execpaths x)`,
//! `$(rootpath x)`, `$(rootpaths x)`, `$$`, and plain variables such as `$(BINDIR)`.

use std::collections::BTreeMap;

/// What a command may refer to.
pub struct Expansion<'a> {
    /// Plain variables (`SRCS`, `OUTS`, `@D`, `RULEDIR`, `BINDIR`, ...).
    pub vars: &'a BTreeMap<String, String>,
    /// `$<` (only when there is exactly one source).
    pub single_src: Option<&'a str>,
    /// `$@` (only when there is exactly one output).
    pub single_out: Option<&'a str>,
    /// Resolves a label as written in the command to its files' exec paths; `Err` says why not.
    pub locate: &'a dyn Fn(&str) -> Result<Vec<String>, String>,
    /// Turns an exec path into a runfiles-relative path (for `rootpath`).
    pub root_path: &'a dyn Fn(&str) -> String,
}

/// Expands every variable in `command`; the error says which reference was bad and what was expected.
pub fn expand(command: &str, ctx: &Expansion<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('<') => {
                out.push_str(ctx.single_src.ok_or("`$<` needs exactly one file in `srcs`")?);
                rest = &after[1..];
            }
            Some('@') => {
                out.push_str(ctx.single_out.ok_or("`$@` needs exactly one file in `outs`; use `$(OUTS)` or `$(@D)`")?);
                rest = &after[1..];
            }
            Some('(') => {
                let end = after.find(')').ok_or_else(|| format!("Unterminated `$(` in `{}`", truncate(&rest[pos..])))?;
                let inner = after[1..end].trim();
                out.push_str(&expand_one(inner, ctx)?);
                rest = &after[end + 1..];
            }
            Some(other) => {
                return Err(format!(
                    "`${other}` is not a variable; write `$$` for a literal `$`, or `$(NAME)` for a variable"
                ))
            }
            None => return Err("The command ends with a lone `$`; write `$$` for a literal `$`".to_string()),
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_one(inner: &str, ctx: &Expansion<'_>) -> Result<String, String> {
    if let Some((function, argument)) = inner.split_once(char::is_whitespace) {
        let argument = argument.trim();
        const FUNCTIONS: &[&str] = &[
            "location",
            "locations",
            "execpath",
            "execpaths",
            "rootpath",
            "rootpaths",
        ];
        if !FUNCTIONS.contains(&function) {
            return Err(format!(
                "Unknown function `$({function} ...)`; expected one of {}",
                FUNCTIONS.join(", ")
            ));
        }
        let files = (ctx.locate)(argument)?;
        return match function {
            "location" | "execpath" | "rootpath" if files.len() != 1 => Err(format!(
                "`$({function} {argument})` expects exactly one file but `{argument}` has {}; use `$({function}s {argument})`",
                files.len()
            )),
            "location" | "execpath" | "locations" | "execpaths" => Ok(files.join(" ")),
            "rootpath" | "rootpaths" => Ok(files.iter().map(|f| (ctx.root_path)(f)).collect::<Vec<_>>().join(" ")),
            _ => Err(format!(
                "Unknown function `$({function} ...)`; expected one of location, locations, execpath, execpaths, rootpath, rootpaths"
            )),
        };
    }
    ctx.vars.get(inner).cloned().ok_or_else(|| {
        let known: Vec<&str> = ctx.vars.keys().map(|k| k.as_str()).collect();
        format!(
            "`$({inner})` is not defined; known variables: {}",
            known.join(", ")
        )
    })
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(command: &str, expected: Expect) {
        let vars: BTreeMap<String, String> = [
            ("SRCS", "a/x.txt a/y.txt"),
            ("OUTS", "kiln-out/bin/a/o.txt"),
            ("@D", "kiln-out/bin/a"),
            ("RULEDIR", "kiln-out/bin/a"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let locate = |label: &str| match label {
            ":x" | "x.txt" => Ok(vec!["a/x.txt".to_string()]),
            ":both" => Ok(vec!["a/x.txt".to_string(), "a/y.txt".to_string()]),
            other => Err(format!("`{other}` is not in srcs, outs or tools")),
        };
        let root_path = |p: &str| p.trim_start_matches("kiln-out/bin/").to_string();
        let ctx = Expansion {
            vars: &vars,
            single_src: None,
            single_out: Some("kiln-out/bin/a/o.txt"),
            locate: &locate,
            root_path: &root_path,
        };
        let actual = match expand(command, &ctx) {
            Ok(s) => s,
            Err(e) => format!("error: {e}"),
        };
        expected.assert_eq(&actual);
    }

    #[test]
    fn expands_variables_and_locations() {
        check(
            "cat $(SRCS) > $@",
            expect!["cat a/x.txt a/y.txt > kiln-out/bin/a/o.txt"],
        );
        check(
            "cp $(location :x) $(@D)/z",
            expect!["cp a/x.txt kiln-out/bin/a/z"],
        );
        check("echo $(locations :both)", expect!["echo a/x.txt a/y.txt"]);
        check(
            "echo $(execpath x.txt) $$HOME $(RULEDIR)",
            expect!["echo a/x.txt $HOME kiln-out/bin/a"],
        );
    }

    #[test]
    fn reports_bad_references() {
        check(
            "cat $<",
            expect!["error: `$<` needs exactly one file in `srcs`"],
        );
        check("echo $(location :both)", expect!["error: `$(location :both)` expects exactly one file but `:both` has 2; use `$(locations :both)`"]);
        check(
            "echo $(location :nope)",
            expect!["error: `:nope` is not in srcs, outs or tools"],
        );
        check(
            "echo $(NOPE)",
            expect!["error: `$(NOPE)` is not defined; known variables: @D, OUTS, RULEDIR, SRCS"],
        );
        check("echo $HOME", expect!["error: `$H` is not a variable; write `$$` for a literal `$`, or `$(NAME)` for a variable"]);
        check(
            "echo $(SRCS",
            expect!["error: Unterminated `$(` in `$(SRCS`"],
        );
        check("echo $(frob x)", expect!["error: Unknown function `$(frob ...)`; expected one of location, locations, execpath, execpaths, rootpath, rootpaths"]);
    }
}
