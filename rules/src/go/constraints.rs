//! Build constraints as `go build` evaluates them (go/build's `MatchFile`): `//go:build`
//! expressions (and legacy `// +build` lines when no `//go:build` is present) and the
//! `_GOOS`, `_GOARCH`, `_GOOS_GOARCH` file-name suffixes. `_test.go` files are told apart by the
//! caller.

use std::sync::Arc;

use super::syslist::SysList;

/// The configuration files are matched against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BuildContext {
    /// Target OS, e.g. `linux`.
    pub goos: String,
    /// Target architecture, e.g. `amd64`.
    pub goarch: String,
    /// Minor version of the Go release (`go1.N` tags hold for every N up to it).
    pub go_minor: u32,
    /// Whether cgo is enabled (Kiln builds with `CGO_ENABLED=0`).
    pub cgo: bool,
    /// Extra tags (`gotags`), including `goexperiment.*` tags.
    pub tags: Vec<String>,
    /// The SDK's known operating systems and architectures.
    pub sys: Arc<SysList>,
}

impl BuildContext {
    /// Whether a single tag holds.
    pub fn tag(&self, tag: &str) -> bool {
        if tag == self.goos || tag == self.goarch || tag == "gc" {
            return true;
        }
        // go/build: GOOS=android also matches linux, illumos matches solaris, ios matches darwin.
        if (tag == "linux" && self.goos == "android")
            || (tag == "solaris" && self.goos == "illumos")
            || (tag == "darwin" && self.goos == "ios")
        {
            return true;
        }
        if tag == "unix" {
            return self.sys.is_unix(&self.goos);
        }
        if tag == "cgo" {
            return self.cgo;
        }
        if let Some(minor) = tag.strip_prefix("go1.") {
            if let Ok(n) = minor.parse::<u32>() {
                return n <= self.go_minor;
            }
        }
        self.tags.iter().any(|t| t == tag)
    }

    /// Whether a file name's `_GOOS` / `_GOARCH` / `_GOOS_GOARCH` suffix (if any) matches.
    /// `name` is the base name; a `_test` suffix before the extension is ignored, as go/build does.
    pub fn matches_file_name(&self, name: &str) -> bool {
        let stem = match name.find('.') {
            Some(i) => &name[..i],
            None => name,
        };
        let stem = stem.strip_suffix("_test").unwrap_or(stem);
        // The first element is never a constraint (`linux.go` holds for every OS).
        let parts: Vec<&str> = stem.split('_').collect();
        if parts.len() < 2 {
            return true;
        }
        let last = parts[parts.len() - 1];
        if parts.len() >= 3 {
            let os = parts[parts.len() - 2];
            if self.sys.is_os(os) && self.sys.is_arch(last) {
                return self.tag(os) && self.tag(last);
            }
        }
        if self.sys.is_os(last) || self.sys.is_arch(last) {
            return self.tag(last);
        }
        true
    }
}

/// A parsed `//go:build` expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// A tag.
    Tag(String),
    /// `!x`
    Not(Box<Expr>),
    /// `x && y`
    And(Box<Expr>, Box<Expr>),
    /// `x || y`
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Evaluates the expression in a context.
    pub fn eval(&self, ctx: &BuildContext) -> bool {
        match self {
            Expr::Tag(t) => ctx.tag(t),
            Expr::Not(x) => !x.eval(ctx),
            Expr::And(a, b) => a.eval(ctx) && b.eval(ctx),
            Expr::Or(a, b) => a.eval(ctx) || b.eval(ctx),
        }
    }
}

/// Parses the text after `//go:build`.
pub fn parse(text: &str) -> Result<Expr, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, pos: 0 };
    let expr = parser.or()?;
    if parser.pos != parser.tokens.len() {
        return Err(format!("unexpected `{}`", parser.tokens[parser.pos]));
    }
    Ok(expr)
}

/// Parses a legacy `// +build` line (space-separated alternatives of comma-joined terms).
pub fn parse_plus_build(text: &str) -> Result<Expr, String> {
    let mut alternatives = Vec::new();
    for alt in text.split_whitespace() {
        let mut terms = Vec::new();
        for term in alt.split(',') {
            let (negated, name) = match term.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, term),
            };
            if name.is_empty() || !name.chars().all(is_tag_char) {
                return Err(format!("invalid `+build` term `{term}`"));
            }
            let tag = Expr::Tag(name.to_string());
            terms.push(if negated {
                Expr::Not(Box::new(tag))
            } else {
                tag
            });
        }
        alternatives.push(fold(terms, Expr::And));
    }
    if alternatives.is_empty() {
        return Err("empty `+build` line".into());
    }
    Ok(fold(alternatives, Expr::Or))
}

fn fold(items: Vec<Expr>, join: fn(Box<Expr>, Box<Expr>) -> Expr) -> Expr {
    let mut iter = items.into_iter();
    let first = iter.next().unwrap_or(Expr::Tag(String::new()));
    iter.fold(first, |acc, x| join(Box::new(acc), Box::new(x)))
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' || c == '!' {
            tokens.push(c.to_string());
            i += 1;
        } else if (c == '&' || c == '|') && chars.get(i + 1) == Some(&c) {
            tokens.push(format!("{c}{c}"));
            i += 2;
        } else if is_tag_char(c) {
            let start = i;
            while i < chars.len() && is_tag_char(chars[i]) {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek() == Some("||") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.peek() == Some("&&") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek() == Some("!") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some("(") => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(")") {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(t) if t.chars().all(is_tag_char) => {
                let tag = t.to_string();
                self.pos += 1;
                Ok(Expr::Tag(tag))
            }
            Some(t) => Err(format!("unexpected `{t}`")),
            None => Err("unexpected end of expression".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux() -> BuildContext {
        BuildContext {
            goos: "linux".into(),
            goarch: "amd64".into(),
            go_minor: 22,
            cgo: false,
            tags: vec!["integration".into()],
            sys: Default::default(),
        }
    }

    #[test]
    fn expressions_evaluate_as_go_build_does() {
        let ctx = linux();
        let cases = [
            ("linux", true),
            ("!linux", false),
            ("linux && amd64", true),
            ("darwin || (unix && !cgo)", true),
            ("cgo", false),
            ("go1.21 && !go1.23", true),
            ("integration", true),
            ("ignore", false),
            ("!windows && !plan9", true),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap().eval(&ctx), want, "{text}");
        }
        assert!(parse("linux &&").is_err());
        assert!(parse("(linux").is_err());
        assert!(parse("linux & amd64").is_err());
    }

    #[test]
    fn plus_build_lines() {
        let ctx = linux();
        assert!(parse_plus_build("darwin linux,amd64").unwrap().eval(&ctx));
        assert!(!parse_plus_build("linux,!amd64").unwrap().eval(&ctx));
    }

    #[test]
    fn file_name_suffixes() {
        let ctx = linux();
        for (name, want) in [
            ("a.go", true),
            ("linux.go", true),
            ("a_linux.go", true),
            ("a_windows.go", false),
            ("a_linux_arm64.go", false),
            ("a_linux_amd64.go", true),
            ("a_amd64.go", true),
            ("a_arm.s", false),
            ("a_windows_test.go", false),
            ("a_linux_test.go", true),
            ("a_foo.go", true),
        ] {
            assert_eq!(ctx.matches_file_name(name), want, "{name}");
        }
    }

    /// A port the SDK knows but the built-in lists do not is a suffix and a `unix` member.
    #[test]
    fn the_sdk_lists_decide_suffixes_and_unix() {
        let mut sys = SysList::default();
        sys.known_os.push("kilnos".into());
        sys.unix_os.push("kilnos".into());
        let linux = linux();
        assert!(
            linux.matches_file_name("a_kilnos.go"),
            "unknown suffix: no constraint"
        );
        let linux = BuildContext {
            sys: Arc::new(sys),
            ..linux
        };
        assert!(!linux.matches_file_name("a_kilnos.go"));
        let kilnos = BuildContext {
            goos: "kilnos".into(),
            ..linux
        };
        assert!(kilnos.matches_file_name("a_kilnos.go") && kilnos.tag("unix"));
    }
}
