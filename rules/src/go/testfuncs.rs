//! Finds what `go test` runs in a test file: `Test*`, `Benchmark*`, `Fuzz*` functions, `TestMain`,
//! and `Example*` functions with their `// Output:` comment, read as go/doc reads them.

use super::lexer::{tokenize, Kind, Token};

/// An example function with its expected output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// Function name, e.g. `ExampleHello`.
    pub name: String,
    /// Expected output (after `Output:`), possibly empty.
    pub output: String,
    /// Whether the comment said `Unordered output:`.
    pub unordered: bool,
}

/// The test functions of one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFuncs {
    /// `func TestXxx(t *testing.T)`.
    pub tests: Vec<String>,
    /// `func BenchmarkXxx(b *testing.B)`.
    pub benchmarks: Vec<String>,
    /// `func FuzzXxx(f *testing.F)`.
    pub fuzz: Vec<String>,
    /// Examples that have an output comment (the others are compiled, not run).
    pub examples: Vec<Example>,
    /// Whether the file declares `func TestMain(m *testing.M)`.
    pub test_main: bool,
}

/// Whether `name` is `prefix` followed by nothing or a non-lowercase letter (cmd/go's `isTest`).
fn is_test_name(name: &str, prefix: &str) -> bool {
    match name.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => !rest.chars().next().is_some_and(|c| c.is_lowercase()),
        None => false,
    }
}

/// Whether the parameter tokens are one parameter of type `*pkg.Type` or `*Type` (a dot-imported
/// `testing`), named or not, as cmd/go's `isTestFunc` accepts (it cannot know how `testing` was
/// imported either).
fn single_pointer_param(params: &[Token], type_name: &str) -> bool {
    let mut kinds: Vec<&Kind> = params.iter().map(|t| &t.kind).collect();
    // gofmt's form of a parameter list broken over lines ends with a comma.
    if matches!(kinds.last(), Some(Kind::Punct(','))) {
        kinds.pop();
    }
    let ty = match kinds.as_slice() {
        [Kind::Ident(_), rest @ ..] if matches!(rest.first(), Some(Kind::Punct('*'))) => rest,
        all => all,
    };
    matches!(ty,
        [Kind::Punct('*'), Kind::Ident(_), Kind::Punct('.'), Kind::Ident(t)]
        | [Kind::Punct('*'), Kind::Ident(t)]
            if t == type_name)
}

/// Reads one test file.
pub fn find(src: &str) -> Result<TestFuncs, String> {
    let all = tokenize(src)?;
    let mut out = TestFuncs::default();
    let mut depth = 0i32;
    let mut i = 0;
    while i < all.len() {
        match &all[i].kind {
            Kind::Punct('{' | '(' | '[') => depth += 1,
            Kind::Punct('}' | ')' | ']') => depth -= 1,
            Kind::Ident(kw) if kw == "func" && depth == 0 => {
                if let Some(Kind::Ident(name)) = all.get(i + 1).map(|t| &t.kind) {
                    let generic = matches!(all.get(i + 2).map(|t| &t.kind), Some(Kind::Punct('[')));
                    let (params, results, body, next) = signature_and_body(&all, i + 2);
                    let signature = Signature {
                        params: &params,
                        results,
                        generic,
                    };
                    classify(name, &signature, &all[body.0..body.1], &mut out)
                        .map_err(|why| format!("{}: {why}", all[i].line))?;
                    i = next;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(out)
}

/// From the token after the function name: (parameter tokens without comments, whether there are
/// results, body token range, index after the body).
fn signature_and_body(all: &[Token], mut i: usize) -> (Vec<Token>, bool, (usize, usize), usize) {
    // Type parameters make it no test function; skip them all the same.
    if matches!(all.get(i).map(|t| &t.kind), Some(Kind::Punct('['))) {
        i = matching(all, i) + 1;
    }
    let open = i;
    let close = matching(all, open);
    let params: Vec<Token> = all[(open + 1).min(close)..close]
        .iter()
        .filter(|t| !matches!(t.kind, Kind::Comment(_)))
        .cloned()
        .collect();
    let mut j = close + 1;
    let mut results = false;
    while j < all.len() && !matches!(all[j].kind, Kind::Punct('{')) {
        if matches!(all[j].kind, Kind::Punct('(')) {
            let end = matching(all, j);
            // An empty result list, `()`, is no result.
            let empty = all[j + 1..end]
                .iter()
                .all(|t| matches!(t.kind, Kind::Comment(_)));
            results |= !empty;
            j = end;
        } else if !matches!(all[j].kind, Kind::Comment(_)) {
            results = true;
        }
        // A declaration without a body ends at the line's end; stop at the next `func` keyword.
        if matches!(&all[j].kind, Kind::Ident(k) if k == "func") {
            return (params, results, (j, j), j);
        }
        j += 1;
    }
    let end = matching(all, j);
    (params, results, (j, end), end + 1)
}

/// Index of the bracket closing the one at `open` (or the last token).
fn matching(all: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (k, t) in all.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Punct('{' | '(' | '[') => depth += 1,
            Kind::Punct('}' | ')' | ']') => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    all.len().saturating_sub(1)
}

/// A top-level function's signature, as far as test discovery needs it.
struct Signature<'a> {
    /// Parameter tokens, comments left out.
    params: &'a [Token],
    /// Whether it has results.
    results: bool,
    /// Whether it has type parameters.
    generic: bool,
}

impl Signature<'_> {
    /// cmd/go's `isTestFunc`: one `*Type` parameter (see [`single_pointer_param`]), no results.
    fn is_test_func(&self, type_name: &str) -> bool {
        !self.results && single_pointer_param(self.params, type_name)
    }

    /// cmd/go's `checkTestFunc`: why a function named as a test cannot be one.
    fn check(&self, name: &str, type_name: &str) -> Result<(), String> {
        let why = if self.generic {
            "test functions cannot have type parameters".to_string()
        } else if !self.is_test_func(type_name) {
            format!(
                "must be: func {name}({} *testing.{type_name})",
                type_name.to_ascii_lowercase()
            )
        } else {
            return Ok(());
        };
        Err(format!("wrong signature for {name}, {why}"))
    }
}

/// Sorts one top-level function as cmd/go's test loader does; a `Test`, `Benchmark` or `Fuzz`
/// function (or `TestMain`) with the wrong signature is its error.
fn classify(
    name: &str,
    signature: &Signature<'_>,
    body: &[Token],
    out: &mut TestFuncs,
) -> Result<(), String> {
    if name == "TestMain" {
        // `func TestMain(t *testing.T)` is an ordinary test, as cmd/go takes it.
        if signature.is_test_func("T") && !signature.generic {
            out.tests.push(name.to_string());
        } else {
            signature.check(name, "M")?;
            out.test_main = true;
        }
    } else if is_test_name(name, "Test") {
        signature.check(name, "T")?;
        out.tests.push(name.to_string());
    } else if is_test_name(name, "Benchmark") {
        signature.check(name, "B")?;
        out.benchmarks.push(name.to_string());
    } else if is_test_name(name, "Fuzz") {
        signature.check(name, "F")?;
        out.fuzz.push(name.to_string());
    } else if name.starts_with("Example") && signature.params.is_empty() && !signature.results {
        if let Some((output, unordered)) = example_output(body) {
            out.examples.push(Example {
                name: name.to_string(),
                output,
                unordered,
            });
        }
    }
    Ok(())
}

/// The last comment group in a body, as go/ast's `CommentGroup.Text`, if it starts with
/// `Output:` or `Unordered output:` (case-insensitive), as go/doc reads example output.
fn example_output(body: &[Token]) -> Option<(String, bool)> {
    let mut group: Vec<&Token> = Vec::new();
    for t in body {
        if let Kind::Comment(_) = t.kind {
            let adjacent = group
                .last()
                .is_some_and(|prev: &&Token| t.line <= prev.line + 1);
            if !adjacent {
                group.clear();
            }
            group.push(t);
        }
    }
    if group.is_empty() {
        return None;
    }
    let mut lines: Vec<String> = Vec::new();
    for t in &group {
        let Kind::Comment(text) = &t.kind else {
            continue;
        };
        if text.starts_with("go:") {
            continue;
        }
        for l in text.lines() {
            let l = l.strip_prefix(' ').unwrap_or(l);
            lines.push(l.trim_end().to_string());
        }
    }
    while lines.first().is_some_and(|l| l.is_empty()) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let text = lines.join("\n") + "\n";
    let trimmed = text.trim_start();
    let lower = trimmed.to_ascii_lowercase();
    let (unordered, rest) = if lower.starts_with("unordered output:") {
        (true, &trimmed["unordered output:".len()..])
    } else if lower.starts_with("output:") {
        (false, &trimmed["output:".len()..])
    } else {
        return None;
    };
    let rest = rest.trim_start_matches(' ');
    let rest = rest.strip_prefix('\n').unwrap_or(rest);
    Some((rest.to_string(), unordered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn finds_tests_benchmarks_fuzz_examples_and_main() {
        let src = r#"package a_test

import (
	"fmt"
	tt "testing"
)

func TestMain(m *tt.M) { m.Run() }
func TestAdd(t *tt.T) { if 1+1 != 2 { t.Fatal("}") } }
func Testlower(t *tt.T) {}
func BenchmarkAdd(b *tt.B) {}
func FuzzAdd(f *tt.F) {}
func (s S) TestMethod(t *tt.T) {}
func helper[T any](t T) {}

func ExampleHello() {
	fmt.Println("hello")
	// Output:
	// hello
	//   world
}

func ExampleNone() {
	fmt.Println("x")
}

func ExampleEmpty() {
	// Output:
}

func ExampleSet() {
	// unordered output: b
	// a
}
"#;
        let funcs = find(src).unwrap();
        expect![[r#"
            TestFuncs {
                tests: [
                    "TestAdd",
                ],
                benchmarks: [
                    "BenchmarkAdd",
                ],
                fuzz: [
                    "FuzzAdd",
                ],
                examples: [
                    Example {
                        name: "ExampleHello",
                        output: "hello\n  world\n",
                        unordered: false,
                    },
                    Example {
                        name: "ExampleEmpty",
                        output: "",
                        unordered: false,
                    },
                    Example {
                        name: "ExampleSet",
                        output: "b\na\n",
                        unordered: true,
                    },
                ],
                test_main: true,
            }
        "#]]
        .assert_debug_eq(&funcs);
    }

    #[test]
    fn a_dot_imported_testing_and_unnamed_parameters_are_tests_as_for_cmd_go() {
        let src = "package a\n\nimport . \"testing\"\n\nfunc TestDot(t *T) {}\nfunc TestUnnamed(*T) {}\nfunc BenchmarkDot(b *B) {}\nfunc TestMain(t *T) {}\n";
        let funcs = find(src).unwrap();
        assert_eq!(funcs.tests, ["TestDot", "TestUnnamed", "TestMain"]);
        assert_eq!(funcs.benchmarks, ["BenchmarkDot"]);
        assert!(
            !funcs.test_main,
            "TestMain(t *T) is a test, as cmd/go takes it"
        );
    }

    #[test]
    fn a_test_function_with_a_wrong_signature_is_an_error_as_in_go_test() {
        let error = |src: &str| find(src).unwrap_err();
        assert_eq!(
            error("package a\n\nimport \"testing\"\n\nfunc TestWrong(x int) {}\n"),
            "5: wrong signature for TestWrong, must be: func TestWrong(t *testing.T)"
        );
        assert_eq!(
            error("package a\n\nfunc BenchmarkX(b *testing.B) int { return 0 }\n"),
            "3: wrong signature for BenchmarkX, must be: func BenchmarkX(b *testing.B)"
        );
        assert_eq!(
            error("package a\n\nfunc FuzzX[T any](f *testing.F) {}\n"),
            "3: wrong signature for FuzzX, test functions cannot have type parameters"
        );
        assert_eq!(
            error("package a\n\nfunc TestMain(m int) {}\n"),
            "3: wrong signature for TestMain, must be: func TestMain(m *testing.M)"
        );
        // gofmt's trailing comma, an empty result list: tests, as for cmd/go.
        let funcs = find(
            "package a\n\nfunc TestA(\n\tt *testing.T,\n) {}\nfunc TestB(t *testing.T) () {}\n",
        )
        .unwrap();
        assert_eq!(funcs.tests, ["TestA", "TestB"]);
        // Not test names (a lowercase letter after the prefix), methods, helpers: no error.
        assert!(find("package a\n\nfunc Testlower(x int) {}\nfunc (s S) TestM(x int) {}\nfunc helper[T any](t T) {}\n").is_ok());
    }
}
