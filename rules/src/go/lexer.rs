//! A small Go tokenizer: enough to read package clauses, imports, `//go:` directives and top-level
//! function declarations without a full parser. Strings, raw strings, runes and comments are
//! recognised so that braces inside them are never counted.

/// One token with the 1-based line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// What the token is.
    pub kind: Kind,
    /// 1-based line.
    pub line: u32,
}

/// Token kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An identifier or keyword.
    Ident(String),
    /// A string literal, unquoted (interpreted escapes are kept as written except `\"`/`\\`).
    Str(String),
    /// A line comment (text after `//`) or a general comment (text between `/*` and `*/`).
    Comment(String),
    /// A number or rune literal (content irrelevant here).
    Literal,
    /// One punctuation character (`(`, `{`, `.`, ...).
    Punct(char),
}

/// Tokenizes Go source. Errors name the line of an unterminated literal or comment.
pub fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    Lexer::new(src).collect()
}

/// Tokenizes the header of a Go file: the tokens up to (not including) the first top-level
/// identifier after the package clause and the import declarations, which is all `go build` reads
/// unless the file imports `embed`. The rest of the file is never lexed.
pub fn tokenize_header(src: &str) -> Result<Vec<Token>, String> {
    header_tokens(src).map(|(tokens, _)| tokens)
}

/// Whether `prefix`, the start of a Go file, holds the file's whole header: the identifier that
/// ends it was lexed and the prefix goes on after it, so no more text can change what
/// [`tokenize_header`] returns. False when the prefix is cut inside the header (or does not lex).
pub fn holds_header(prefix: &str) -> bool {
    matches!(header_tokens(prefix), Ok((_, Some(end))) if end < prefix.len())
}

/// The header's tokens, and the byte offset just past the identifier that ended it (`None` when
/// the text ended first).
fn header_tokens(src: &str) -> Result<(Vec<Token>, Option<usize>), String> {
    let mut out: Vec<Token> = Vec::new();
    let mut depth = 0i32;
    let mut idents = 0usize;
    let mut lexer = Lexer::new(src);
    while let Some(token) = lexer.next() {
        let token = token?;
        match &token.kind {
            Kind::Punct('(') => depth += 1,
            Kind::Punct(')') => depth -= 1,
            Kind::Ident(word) if depth == 0 => {
                idents += 1;
                let after_import = out
                    .iter()
                    .rev()
                    .find(|t| !matches!(t.kind, Kind::Comment(_)))
                    .is_some_and(|t| t.kind == Kind::Ident("import".into()));
                // `package NAME`, then only `import` and an alias right after it.
                if idents > 2 && word != "import" && !after_import {
                    return Ok((out, Some(lexer.i)));
                }
            }
            _ => {}
        }
        out.push(token);
    }
    Ok((out, None))
}

/// Go tokens, one at a time.
struct Lexer<'a> {
    src: &'a str,
    i: usize,
    line: u32,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer { src, i: 0, line: 1 }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Result<Token, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.lex();
        if let Some(Err(_)) = next {
            // Nothing after an error is lexed.
            self.i = self.src.len();
        }
        next
    }
}

impl Lexer<'_> {
    fn lex(&mut self) -> Option<Result<Token, String>> {
        let src = self.src;
        let b = src.as_bytes();
        let Lexer { i, line, .. } = self;
        while *i < b.len() {
            let c = b[*i];
            let start_line = *line;
            match c {
                b'\n' => {
                    *line += 1;
                    *i += 1;
                }
                b' ' | b'\t' | b'\r' => *i += 1,
                b'/' if b.get(*i + 1) == Some(&b'/') => {
                    let end = src[*i..].find('\n').map(|n| *i + n).unwrap_or(b.len());
                    let text = src[*i + 2..end].to_string();
                    *i = end;
                    return Some(Ok(tok(Kind::Comment(text), start_line)));
                }
                b'/' if b.get(*i + 1) == Some(&b'*') => {
                    let Some(end) = src[*i + 2..].find("*/").map(|n| *i + 2 + n) else {
                        return Some(Err(format!("line {line}: unterminated comment")));
                    };
                    let text = &src[*i + 2..end];
                    *line += text.matches('\n').count() as u32;
                    *i = end + 2;
                    return Some(Ok(tok(Kind::Comment(text.to_string()), start_line)));
                }
                b'"' => {
                    let mut value = String::new();
                    let mut j = *i + 1;
                    loop {
                        match b.get(j) {
                            None | Some(b'\n') => {
                                return Some(Err(format!("line {line}: unterminated string")))
                            }
                            Some(b'"') => break,
                            Some(b'\\') => {
                                if let Some(&n) = b.get(j + 1) {
                                    if n == b'"' || n == b'\\' {
                                        value.push(n as char);
                                    } else {
                                        value.push('\\');
                                        value.push(n as char);
                                    }
                                }
                                j += 2;
                            }
                            Some(_) => {
                                let ch_len = utf8_len(b[j]);
                                value.push_str(&src[j..j + ch_len]);
                                j += ch_len;
                            }
                        }
                    }
                    *i = j + 1;
                    return Some(Ok(tok(Kind::Str(value), start_line)));
                }
                b'`' => {
                    let Some(end) = src[*i + 1..].find('`').map(|n| *i + 1 + n) else {
                        return Some(Err(format!("line {line}: unterminated raw string")));
                    };
                    let text = &src[*i + 1..end];
                    *line += text.matches('\n').count() as u32;
                    *i = end + 1;
                    return Some(Ok(tok(Kind::Str(text.to_string()), start_line)));
                }
                b'\'' => {
                    let mut j = *i + 1;
                    while j < b.len() && b[j] != b'\'' && b[j] != b'\n' {
                        j += if b[j] == b'\\' { 2 } else { 1 };
                    }
                    if b.get(j) != Some(&b'\'') {
                        return Some(Err(format!("line {line}: unterminated rune literal")));
                    }
                    *i = j + 1;
                    return Some(Ok(tok(Kind::Literal, start_line)));
                }
                c if c.is_ascii_digit() => {
                    while *i < b.len()
                        && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_' || b[*i] == b'.')
                    {
                        *i += 1;
                    }
                    return Some(Ok(tok(Kind::Literal, start_line)));
                }
                c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                    let start = *i;
                    while *i < b.len()
                        && (b[*i] == b'_' || b[*i].is_ascii_alphanumeric() || b[*i] >= 0x80)
                    {
                        *i += utf8_len(b[*i]);
                    }
                    let end = (*i).min(b.len());
                    *i = end;
                    return Some(Ok(tok(
                        Kind::Ident(src[start..end].to_string()),
                        start_line,
                    )));
                }
                _ => {
                    let ch_len = utf8_len(c);
                    let ch = src[*i..].chars().next().unwrap_or('?');
                    *i += ch_len;
                    return Some(Ok(tok(Kind::Punct(ch), start_line)));
                }
            }
        }
        None
    }
}

fn tok(kind: Kind, line: u32) -> Token {
    Token { kind, line }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_in_literals_and_comments_are_not_tokens() {
        let src = "package a\n// {\nvar s = \"}\\\"\" + `\n{` /* } */\nvar r = '}'\n";
        let toks = tokenize(src).unwrap();
        assert!(!toks
            .iter()
            .any(|t| matches!(t.kind, Kind::Punct('{' | '}'))));
        assert_eq!(toks.last().unwrap().line, 5);
        assert!(toks.contains(&Token {
            kind: Kind::Str("}\"".into()),
            line: 3
        }));
        assert!(tokenize("var s = \"abc\n").is_err());
    }

    #[test]
    fn the_header_ends_at_the_first_declaration() {
        let src = "// +build linux\npackage a // c\n\nimport f \"fmt\"\nimport (\n\t. \"os\"\n\t_ \"embed\"\n)\n\nfunc F() { s := \"unterminated\n}\n";
        let header = tokenize_header(src).unwrap();
        let last = header.last().unwrap();
        assert_eq!(last.kind, Kind::Punct(')'));
        assert_eq!(last.line, 8);
        let strings: Vec<&Kind> = header
            .iter()
            .filter(|t| matches!(t.kind, Kind::Str(_)))
            .map(|t| &t.kind)
            .collect();
        assert_eq!(strings.len(), 3, "fmt, os and embed");
        // The whole file has an unterminated string in its body; the header never reaches it.
        assert!(tokenize(src).is_err());
        // A file without imports ends right after its package clause.
        let header = tokenize_header("package b\n\nvar x = 1\n").unwrap();
        assert_eq!(header.len(), 2);
    }

    #[test]
    fn a_prefix_holds_the_header_only_past_the_identifier_that_ends_it() {
        let src = "// Package a.\npackage a\n\nimport (\n\t\"fmt\" // x\n)\n\nfunc F() {}\n";
        let end = src.find("func").unwrap_or_else(|| panic!("func")) + "func".len();
        for cut in 0..=src.len() {
            let prefix = &src[..cut];
            assert_eq!(holds_header(prefix), cut > end, "cut at {cut}: {prefix:?}");
            if holds_header(prefix) {
                assert_eq!(tokenize_header(prefix), tokenize_header(src));
            }
        }
        // Cut inside a comment of the header: it does not lex, so more is needed.
        assert!(!holds_header("package a\n/* import \"os\""));
        // A file that ends in its header never holds it: read to its end.
        assert!(!holds_header("package a\n"));
    }
}
