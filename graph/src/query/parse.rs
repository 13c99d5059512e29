//! The query language's lexer and parser: text in, [`Expr`] out, every error at a 1-based column.
//!
//! Grammar (Bazel's, without `let`):
//!
//! ```text
//! expr    := primary (op primary)*          -- all operators left-associative, equal precedence
//! op      := '+' | 'union' | '-' | 'except' | '^' | 'intersect'
//! primary := '(' expr ')' | 'set' '(' word* ')' | func '(' args ')' | word
//! word    := unquoted word | "quoted" | 'quoted'
//! ```
//!
//! Target patterns are parsed here (against the working directory's package), so a malformed
//! pattern is a syntax error with a position, like any other.

use regex::Regex;

use super::QueryError;
use crate::pattern::{Pattern, PatternSet};

/// A parsed query expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// A target pattern, e.g. `//a:b` or `//a/...`.
    Pattern(Pattern),
    /// `set(a b c)`: the union of several patterns.
    Set(Vec<Pattern>),
    /// `x + y`, `x - y`, `x ^ y` and their keyword spellings.
    Binary(SetOp, Box<Expr>, Box<Expr>),
    /// `deps(x)`, `deps(x, depth)`.
    Deps(Box<Expr>, Option<u32>),
    /// `rdeps(universe, x)`, `rdeps(universe, x, depth)`.
    Rdeps(Box<Expr>, Box<Expr>, Option<u32>),
    /// `kind(regex, x)`.
    Kind(Regex, Box<Expr>),
    /// `filter(regex, x)`: targets whose label matches.
    Filter(Regex, Box<Expr>),
    /// `attr(name, regex, x)`.
    Attr(String, Regex, Box<Expr>),
    /// `labels(attr, x)`.
    Labels(String, Box<Expr>),
    /// `allpaths(from, to)`.
    Allpaths(Box<Expr>, Box<Expr>),
    /// `somepath(from, to)`.
    Somepath(Box<Expr>, Box<Expr>),
}

/// A binary set operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// `+`, `union`.
    Union,
    /// `-`, `except`.
    Except,
    /// `^`, `intersect`.
    Intersect,
}

/// The functions the language knows, for error messages.
const FUNCTIONS: &str =
    "`deps`, `rdeps`, `kind`, `filter`, `attr`, `labels`, `allpaths`, `somepath`, `set`";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Caret,
    Word { text: String, quoted: bool },
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Caret => "`^`".into(),
            Tok::Word { text, .. } => format!("`{text}`"),
            Tok::End => "the end of the expression".into(),
        }
    }
}

/// Bazel's unquoted word characters; anything else must be quoted.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "*/@.-_:$~[]".contains(c)
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '+' => Some(Tok::Plus),
            '^' => Some(Tok::Caret),
            '-' => Some(Tok::Minus),
            _ => None,
        };
        if c.is_whitespace() {
            i += 1;
        } else if let Some(tok) = single {
            out.push((tok, column));
            i += 1;
        } else if c == '"' || c == '\'' {
            let end = chars[i + 1..].iter().position(|&d| d == c).ok_or_else(|| {
                syntax(
                    column,
                    format!("unterminated string; expected a closing `{c}`"),
                )
            })?;
            let word: String = chars[i + 1..i + 1 + end].iter().collect();
            out.push((
                Tok::Word {
                    text: word,
                    quoted: true,
                },
                column,
            ));
            i += end + 2;
        } else if is_word_char(c) {
            let start = i;
            while i < chars.len() && is_word_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push((
                Tok::Word {
                    text: word,
                    quoted: false,
                },
                column,
            ));
        } else {
            return Err(syntax(
                column,
                format!("unexpected character `{c}`; expected a target pattern, a function, an operator or a parenthesis"),
            ));
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

fn syntax(column: usize, message: impl Into<String>) -> QueryError {
    QueryError::Syntax {
        column,
        message: message.into(),
    }
}

/// Parses `text`; relative patterns (`:x`, `a/...`) are relative to `cwd_package`.
pub fn parse(text: &str, cwd_package: &str) -> Result<Expr, QueryError> {
    let mut parser = Parser {
        toks: lex(text)?,
        pos: 0,
        cwd_package,
    };
    let expr = parser.expr()?;
    let (tok, column) = parser.peek();
    if *tok != Tok::End {
        return Err(syntax(
            column,
            format!("expected an operator (`+`, `-`, `^`, `union`, `except`, `intersect`) or the end of the expression, found {}", tok.describe()),
        ));
    }
    Ok(expr)
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    cwd_package: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> (&Tok, usize) {
        let (tok, column) = &self.toks[self.pos];
        (tok, *column)
    }

    fn next(&mut self) -> (Tok, usize) {
        let tok = self.toks[self.pos].clone();
        if tok.0 != Tok::End {
            self.pos += 1;
        }
        tok
    }

    fn expect(&mut self, want: Tok, context: &str) -> Result<(), QueryError> {
        let (tok, column) = self.next();
        if tok == want {
            Ok(())
        } else {
            Err(syntax(
                column,
                format!(
                    "expected {} {context}, found {}",
                    want.describe(),
                    tok.describe()
                ),
            ))
        }
    }

    fn op(&self) -> Option<SetOp> {
        match self.peek().0 {
            Tok::Plus => Some(SetOp::Union),
            Tok::Minus => Some(SetOp::Except),
            Tok::Caret => Some(SetOp::Intersect),
            Tok::Word {
                text,
                quoted: false,
            } => match text.as_str() {
                "union" => Some(SetOp::Union),
                "except" => Some(SetOp::Except),
                "intersect" => Some(SetOp::Intersect),
                _ => None,
            },
            _ => None,
        }
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.primary()?;
        while let Some(op) = self.op() {
            self.next();
            let right = self.primary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let (tok, column) = self.next();
        match tok {
            Tok::LParen => {
                let inner = self.expr()?;
                self.expect(Tok::RParen, "to close the `(`")?;
                Ok(inner)
            }
            Tok::Word {
                text,
                quoted: false,
            } if *self.peek().0 == Tok::LParen => {
                self.next();
                let expr = self.call(&text, column)?;
                self.expect(Tok::RParen, &format!("to close `{text}(`"))?;
                Ok(expr)
            }
            Tok::Word { text, quoted } => {
                if !quoted && ["union", "except", "intersect", "let", "in"].contains(&text.as_str())
                {
                    return Err(syntax(
                        column,
                        format!(
                            "expected a target pattern or a function, found the keyword `{text}`"
                        ),
                    ));
                }
                self.pattern(&text, column).map(Expr::Pattern)
            }
            other => Err(syntax(
                column,
                format!(
                    "expected a target pattern, a function or `(`, found {}",
                    other.describe()
                ),
            )),
        }
    }

    fn call(&mut self, name: &str, column: usize) -> Result<Expr, QueryError> {
        let expr = match name {
            "deps" => {
                let x = self.expr()?;
                Expr::Deps(Box::new(x), self.optional_depth()?)
            }
            "rdeps" => {
                let universe = self.expr()?;
                self.expect(Tok::Comma, "after the universe of `rdeps`")?;
                let x = self.expr()?;
                Expr::Rdeps(Box::new(universe), Box::new(x), self.optional_depth()?)
            }
            "kind" | "filter" => {
                let re = self.regex()?;
                self.expect(Tok::Comma, &format!("after the pattern of `{name}`"))?;
                let x = Box::new(self.expr()?);
                if name == "kind" {
                    Expr::Kind(re, x)
                } else {
                    Expr::Filter(re, x)
                }
            }
            "attr" => {
                let (attr, _) = self.word("an attribute name")?;
                self.expect(Tok::Comma, "after the attribute name of `attr`")?;
                let re = self.regex()?;
                self.expect(Tok::Comma, "after the pattern of `attr`")?;
                Expr::Attr(attr, re, Box::new(self.expr()?))
            }
            "labels" => {
                let (attr, _) = self.word("an attribute name")?;
                self.expect(Tok::Comma, "after the attribute name of `labels`")?;
                Expr::Labels(attr, Box::new(self.expr()?))
            }
            "allpaths" | "somepath" => {
                let from = Box::new(self.expr()?);
                self.expect(
                    Tok::Comma,
                    &format!("between the two arguments of `{name}`"),
                )?;
                let to = Box::new(self.expr()?);
                if name == "allpaths" {
                    Expr::Allpaths(from, to)
                } else {
                    Expr::Somepath(from, to)
                }
            }
            "set" => {
                let mut patterns = Vec::new();
                while let (Tok::Word { text, .. }, column) = self.peek() {
                    let (text, column) = (text.clone(), column);
                    self.next();
                    patterns.push(self.pattern(&text, column)?);
                }
                Expr::Set(patterns)
            }
            _ => {
                return Err(syntax(
                    column,
                    format!("unknown function `{name}`; expected one of {FUNCTIONS}"),
                ));
            }
        };
        Ok(expr)
    }

    fn word(&mut self, what: &str) -> Result<(String, usize), QueryError> {
        match self.next() {
            (Tok::Word { text, .. }, column) => Ok((text, column)),
            (tok, column) => Err(syntax(
                column,
                format!("expected {what}, found {}", tok.describe()),
            )),
        }
    }

    fn regex(&mut self) -> Result<Regex, QueryError> {
        let (text, column) = self.word("a regular expression")?;
        Regex::new(&text).map_err(|e| {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string();
            syntax(
                column,
                format!("invalid regular expression `{text}`: {first}"),
            )
        })
    }

    fn optional_depth(&mut self) -> Result<Option<u32>, QueryError> {
        if *self.peek().0 != Tok::Comma {
            return Ok(None);
        }
        self.next();
        let (text, column) = self.word("a depth")?;
        text.parse().map(Some).map_err(|_| {
            syntax(
                column,
                format!("expected a depth (a non-negative integer), found `{text}`"),
            )
        })
    }

    fn pattern(&self, text: &str, column: usize) -> Result<Pattern, QueryError> {
        if text.starts_with('-') {
            return Err(syntax(column, format!("a target pattern may not start with `-` in a query (`{text}`); expected `x - y` or `x except y` to subtract")));
        }
        let mut set = PatternSet::parse(&[text.to_string()], self.cwd_package)
            .map_err(|e| syntax(column, e.to_string()))?;
        Ok(set.entries.remove(0).1)
    }
}
