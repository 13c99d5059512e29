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
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line: u32 = 1;
    while i < b.len() {
        let c = b[i];
        let start_line = line;
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = src[i..].find('\n').map(|n| i + n).unwrap_or(b.len());
                out.push(tok(Kind::Comment(src[i + 2..end].to_string()), start_line));
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..]
                    .find("*/")
                    .map(|n| i + 2 + n)
                    .ok_or_else(|| format!("line {line}: unterminated comment"))?;
                let text = &src[i + 2..end];
                line += text.matches('\n').count() as u32;
                out.push(tok(Kind::Comment(text.to_string()), start_line));
                i = end + 2;
            }
            b'"' => {
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None | Some(b'\n') => {
                            return Err(format!("line {line}: unterminated string"))
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
                out.push(tok(Kind::Str(value), start_line));
                i = j + 1;
            }
            b'`' => {
                let end = src[i + 1..]
                    .find('`')
                    .map(|n| i + 1 + n)
                    .ok_or_else(|| format!("line {line}: unterminated raw string"))?;
                let text = &src[i + 1..end];
                line += text.matches('\n').count() as u32;
                out.push(tok(Kind::Str(text.to_string()), start_line));
                i = end + 1;
            }
            b'\'' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'\'' && b[j] != b'\n' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if b.get(j) != Some(&b'\'') {
                    return Err(format!("line {line}: unterminated rune literal"));
                }
                out.push(tok(Kind::Literal, start_line));
                i = j + 1;
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                out.push(tok(Kind::Literal, start_line));
            }
            c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                let start = i;
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric() || b[i] >= 0x80)
                {
                    i += utf8_len(b[i]);
                }
                let end = i.min(b.len());
                out.push(tok(Kind::Ident(src[start..end].to_string()), start_line));
                i = end;
            }
            _ => {
                let ch_len = utf8_len(c);
                let ch = src[i..].chars().next().unwrap_or('?');
                out.push(tok(Kind::Punct(ch), start_line));
                i += ch_len;
            }
        }
    }
    Ok(out)
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
}
