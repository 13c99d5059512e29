//! Reads what `go build` reads from a Go file before compiling it: build constraints, `//go:debug`
//! directives (line comments before the package clause), the package clause, imports (with
//! `import "C"` marking cgo), and `//go:embed` patterns.

use super::constraints::{self, BuildContext, Expr};
use super::lexer::{tokenize, tokenize_header, Kind};

/// One import of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// The import path.
    pub path: String,
    /// 1-based line of the import spec.
    pub line: u32,
}

/// A `//go:debug` line before the package clause, as go/build records directives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// The whole comment, `//go:debug key=value`.
    pub text: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based byte column of the `//`.
    pub col: u32,
}

/// What a Go file's header says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileInfo {
    /// The package clause's name.
    pub package: String,
    /// Imports in source order (`"C"` excluded).
    pub imports: Vec<Import>,
    /// The `//go:build` constraint, if any.
    pub go_build: Option<Expr>,
    /// Legacy `// +build` lines (used only when there is no `//go:build`).
    pub plus_build: Vec<Expr>,
    /// Whether the file imports `"C"`.
    pub cgo: bool,
    /// `//go:embed` patterns, with their line.
    pub embeds: Vec<(String, u32)>,
    /// `//go:debug` directives (only those before the package clause count, as in go/build).
    pub go_debug: Vec<Directive>,
}

impl FileInfo {
    /// Whether the file's constraints hold in `ctx` (its name is checked separately).
    pub fn constraints_hold(&self, ctx: &BuildContext) -> bool {
        match &self.go_build {
            Some(expr) => expr.eval(ctx),
            None => self.plus_build.iter().all(|e| e.eval(ctx)),
        }
    }
}

/// Scans a Go file. Errors carry `line:col`-less line numbers as `line N: ...`.
pub fn scan(src: &str) -> Result<FileInfo, String> {
    // The header is all `go build` reads, unless the file imports `embed` (then its directives).
    let tokens = tokenize_header(src)?;
    let mut info = FileInfo::default();
    let mut i = 0;
    // Leading comments: build constraints.
    while i < tokens.len() {
        match &tokens[i].kind {
            Kind::Comment(text) => {
                if let Some(expr) = text.strip_prefix("go:build") {
                    if expr.starts_with([' ', '\t']) || expr.is_empty() {
                        if info.go_build.is_some() {
                            return Err(format!(
                                "line {}: multiple `//go:build` lines",
                                tokens[i].line
                            ));
                        }
                        info.go_build = Some(constraints::parse(expr).map_err(|e| {
                            format!("line {}: invalid `//go:build` line: {e}", tokens[i].line)
                        })?);
                    }
                } else if text.starts_with("go:debug") {
                    if let Some(col) = line_comment_col(src, tokens[i].line, text) {
                        info.go_debug.push(Directive {
                            text: format!("//{text}"),
                            line: tokens[i].line,
                            col,
                        });
                    }
                } else if let Some(expr) = text.trim_start().strip_prefix("+build") {
                    if expr.starts_with([' ', '\t']) {
                        info.plus_build.push(
                            constraints::parse_plus_build(expr)
                                .map_err(|e| format!("line {}: {e}", tokens[i].line))?,
                        );
                    }
                }
                i += 1;
            }
            _ => break,
        }
    }
    match (tokens.get(i).map(|t| &t.kind), tokens.get(i + 1)) {
        (Some(Kind::Ident(kw)), Some(t)) if kw == "package" => match &t.kind {
            Kind::Ident(name) => info.package = name.clone(),
            _ => return Err(format!("line {}: expected a package name", t.line)),
        },
        _ => {
            let line = tokens.get(i).map(|t| t.line).unwrap_or(1);
            return Err(format!("line {line}: expected `package` clause"));
        }
    }
    i += 2;
    let body_start = i;
    // Import declarations.
    loop {
        i = skip_comments_and_semicolons(&tokens, i);
        let Some(Kind::Ident(kw)) = tokens.get(i).map(|t| &t.kind) else {
            break;
        };
        if kw != "import" {
            break;
        }
        i += 1;
        if matches!(tokens.get(i).map(|t| &t.kind), Some(Kind::Punct('('))) {
            i += 1;
            loop {
                i = skip_comments_and_semicolons(&tokens, i);
                match tokens.get(i).map(|t| &t.kind) {
                    Some(Kind::Punct(')')) => {
                        i += 1;
                        break;
                    }
                    None => return Err("unterminated import block".into()),
                    _ => i = import_spec(&tokens, i, &mut info)?,
                }
            }
        } else {
            i = import_spec(&tokens, i, &mut info)?;
        }
    }
    if info.imports.iter().any(|imp| imp.path == "embed") {
        let tokens = tokenize(src)?;
        for t in &tokens[body_start..] {
            if let Kind::Comment(text) = &t.kind {
                if let Some(rest) = text.strip_prefix("go:embed") {
                    if rest.starts_with([' ', '\t']) {
                        for pattern in
                            embed_patterns(rest).map_err(|e| format!("line {}: {e}", t.line))?
                        {
                            info.embeds.push((pattern, t.line));
                        }
                    }
                }
            }
        }
    }
    Ok(info)
}

/// The column of `//text` when it is a line comment ending line `line` of `src` (a general
/// comment `/*go:debug ...*/` is not a directive).
fn line_comment_col(src: &str, line: u32, text: &str) -> Option<u32> {
    if text.contains('\n') {
        return None;
    }
    let source_line = src.split('\n').nth(line.checked_sub(1)? as usize)?;
    let start = source_line.len().checked_sub(text.len() + 2)?;
    let found = source_line.get(start..)?;
    (found.strip_prefix("//") == Some(text)).then(|| start as u32 + 1)
}

fn skip_comments_and_semicolons(tokens: &[super::lexer::Token], mut i: usize) -> usize {
    while matches!(
        tokens.get(i).map(|t| &t.kind),
        Some(Kind::Comment(_) | Kind::Punct(';'))
    ) {
        i += 1;
    }
    i
}

fn import_spec(
    tokens: &[super::lexer::Token],
    mut i: usize,
    info: &mut FileInfo,
) -> Result<usize, String> {
    if matches!(
        tokens.get(i).map(|t| &t.kind),
        Some(Kind::Ident(_) | Kind::Punct('.'))
    ) {
        i += 1;
    }
    match tokens.get(i) {
        Some(t) => match &t.kind {
            Kind::Str(path) => {
                if path == "C" {
                    info.cgo = true;
                } else {
                    info.imports.push(Import {
                        path: path.clone(),
                        line: t.line,
                    });
                }
                Ok(i + 1)
            }
            _ => Err(format!("line {}: expected an import path", t.line)),
        },
        None => Err("unexpected end of file in import".into()),
    }
}

/// Splits a `//go:embed` argument list: space-separated, each optionally `"quoted"` or
/// `` `raw` ``.
pub fn embed_patterns(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (pattern, tail) = if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or("unterminated `\"` in `//go:embed`")?;
            (r[..end].to_string(), &r[end + 1..])
        } else if let Some(r) = rest.strip_prefix('`') {
            let end = r.find('`').ok_or("unterminated `` ` `` in `//go:embed`")?;
            (r[..end].to_string(), &r[end + 1..])
        } else {
            let end = rest.find([' ', '\t']).unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        out.push(pattern);
        rest = tail.trim_start();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn header_with_constraints_imports_and_embeds() {
        let src = r#"// Copyright
//go:build linux && !cgo

// Package a does things.
package a

import "fmt"
import (
	_ "embed"
	str "strings" // comment
	. "example.com/x/y"; "C"
)

//go:embed hello.txt "with space.txt" `raw*.txt`
var s string

func F() { fmt.Println(str.ToUpper(s)) }
"#;
        let info = scan(src).unwrap();
        expect![[r#"
            package=a cgo=true
            imports=[("fmt", 7), ("embed", 9), ("strings", 10), ("example.com/x/y", 11)]
            embeds=[("hello.txt", 14), ("with space.txt", 14), ("raw*.txt", 14)]
            build=Some(And(Tag("linux"), Not(Tag("cgo"))))"#]]
        .assert_eq(&format!(
            "package={} cgo={}\nimports={:?}\nembeds={:?}\nbuild={:?}",
            info.package,
            info.cgo,
            info.imports
                .iter()
                .map(|i| (i.path.as_str(), i.line))
                .collect::<Vec<_>>(),
            info.embeds,
            info.go_build
        ));
    }

    #[test]
    fn go_debug_directives_before_the_package_clause_only() {
        let src = "// Copyright\n//go:debug panicnil=1\n/*go:debug block=1*/\n  //go:debug  x509sha1=1\n/*\n//go:debug inside=1\n*/\npackage main\n\n//go:debug after=1\nimport \"fmt\"\n";
        let info = scan(src).unwrap();
        expect![[r#"
            [
                Directive {
                    text: "//go:debug panicnil=1",
                    line: 2,
                    col: 1,
                },
                Directive {
                    text: "//go:debug  x509sha1=1",
                    line: 4,
                    col: 3,
                },
            ]
        "#]]
        .assert_debug_eq(&info.go_debug);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            scan("// x\n\nfunc f() {}\n").unwrap_err(),
            "line 3: expected `package` clause"
        );
        assert!(scan("//go:build linux &&\npackage a\n")
            .unwrap_err()
            .starts_with("line 1: invalid `//go:build` line"));
    }
}
