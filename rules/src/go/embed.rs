//! `//go:embed` patterns resolved against a target's `embedsrcs` as the compiler expects them in
//! `-embedcfg`: a JSON object of `Patterns` (pattern → matched package-relative files) and `Files`
//! (file → path the compiler opens).

use std::collections::BTreeMap;

/// One `path.Match` element match (`*`, `?`, `[...]`, `\` escapes) of a pattern element against a
/// name element.
fn match_elem(pattern: &[char], name: &[char]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some('*') => (0..=name.len()).any(|i| match_elem(&pattern[1..], &name[i..])),
        Some('?') => !name.is_empty() && match_elem(&pattern[1..], &name[1..]),
        Some('[') => {
            let Some(close) = pattern.iter().position(|&c| c == ']') else {
                return false;
            };
            let Some(&c) = name.first() else {
                return false;
            };
            let class = &pattern[1..close];
            let (negated, class) = match class.first() {
                Some('^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negated && match_elem(&pattern[close + 1..], &name[1..])
        }
        Some('\\') if pattern.len() > 1 => {
            name.first() == Some(&pattern[1]) && match_elem(&pattern[2..], &name[1..])
        }
        Some(&p) => name.first() == Some(&p) && match_elem(&pattern[1..], &name[1..]),
    }
}

/// Whether `pattern` (slash-separated) matches the first elements of `path` exactly.
fn matches_prefix(pattern: &str, path: &[&str]) -> Option<usize> {
    let pat: Vec<&str> = pattern.split('/').collect();
    if pat.len() > path.len() {
        return None;
    }
    for (p, n) in pat.iter().zip(path) {
        let p: Vec<char> = p.chars().collect();
        let n: Vec<char> = n.chars().collect();
        if !match_elem(&p, &n) {
            return None;
        }
    }
    Some(pat.len())
}

/// Resolves `patterns` (with their `file:line` for errors) against `files`: (package-relative
/// path, path the compiler opens). Returns the embedcfg JSON.
pub fn embedcfg(
    patterns: &[(String, String)],
    files: &[(String, String)],
) -> Result<String, String> {
    let mut pattern_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut file_map: BTreeMap<String, String> = BTreeMap::new();
    for (pattern, at) in patterns {
        let (all, pat) = match pattern.strip_prefix("all:") {
            Some(p) => (true, p),
            None => (false, pattern.as_str()),
        };
        if pat.is_empty() || pat.starts_with('/') || pat.split('/').any(|e| e == ".." || e == ".") {
            return Err(format!("{at}: invalid `//go:embed` pattern `{pattern}`"));
        }
        let mut matched = Vec::new();
        for (rel, exec) in files {
            let elems: Vec<&str> = rel.split('/').collect();
            let Some(n) = matches_prefix(pat, &elems) else {
                continue;
            };
            // A directory match takes the files below it, except hidden ones unless `all:`.
            let hidden = elems[n..]
                .iter()
                .any(|e| e.starts_with('.') || e.starts_with('_'));
            if n < elems.len() && hidden && !all {
                continue;
            }
            matched.push(rel.clone());
            file_map.insert(rel.clone(), exec.clone());
        }
        if matched.is_empty() {
            return Err(format!(
                "{at}: pattern `{pattern}`: no matching files found in `embedsrcs`"
            ));
        }
        matched.sort();
        pattern_map.insert(pattern.clone(), matched);
    }
    let json = serde_json::json!({ "Patterns": pattern_map, "Files": file_map });
    Ok(json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories() {
        let files: Vec<(String, String)> = [
            "hello.txt",
            "static/a.css",
            "static/.hidden",
            "static/sub/b.js",
            "other.md",
        ]
        .iter()
        .map(|f| (f.to_string(), format!("web/{f}")))
        .collect();
        let cfg = embedcfg(
            &[
                ("hello.txt".into(), "web/a.go:5".into()),
                ("static".into(), "web/a.go:6".into()),
                ("*.md".into(), "web/a.go:7".into()),
            ],
            &files,
        )
        .unwrap();
        assert_eq!(
            cfg,
            r#"{"Files":{"hello.txt":"web/hello.txt","other.md":"web/other.md","static/a.css":"web/static/a.css","static/sub/b.js":"web/static/sub/b.js"},"Patterns":{"*.md":["other.md"],"hello.txt":["hello.txt"],"static":["static/a.css","static/sub/b.js"]}}"#
        );
        let all = embedcfg(&[("all:static".into(), "x".into())], &files).unwrap();
        assert!(all.contains(".hidden"));
        assert_eq!(
            embedcfg(&[("missing.txt".into(), "web/a.go:9".into())], &files).unwrap_err(),
            "web/a.go:9: pattern `missing.txt`: no matching files found in `embedsrcs`"
        );
    }
}
