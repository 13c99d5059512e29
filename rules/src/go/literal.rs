//! Go string literals for generated Go source and for the linker's importcfg (`modinfo "..."`),
//! which reads them back with `strconv.Unquote`.

/// Quotes bytes as a Go interpreted string literal: printable ASCII as is, `"` and `\` escaped,
/// everything else as `\xNN` (valid for any byte sequence, UTF-8 or not).
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn escapes() {
        assert_eq!(
            quote(b"a\"b\\c\nd\te\x01\xff"),
            r#""a\"b\\c\nd\te\x01\xff""#
        );
    }
}
