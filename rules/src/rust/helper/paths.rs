//! Whole-path matching in the values build scripts exchange. Part of the Rust helper program
//! (compiled by rustc inside the build, std only); also compiled into `kiln-rules` for its unit
//! tests.

/// Whether `text` names the directory `dir` or a path under it (`dir` followed by `/`, or by
/// a character that cannot continue a file name here: end, space, `:`, `;`, `,`, `=`, quotes).
pub fn contains_path(text: &str, dir: &str) -> bool {
    path_matches(text, dir).next().is_some()
}

/// `text` with every whole-path occurrence of directory `from` (see [`contains_path`]) replaced
/// by `to`.
pub fn replace_path(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for at in path_matches(text, from) {
        out.push_str(&text[last..at]);
        out.push_str(to);
        last = at + from.len();
    }
    out.push_str(&text[last..]);
    out
}

fn path_matches<'a>(text: &'a str, dir: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(dir).map(|(at, _)| at).filter(move |at| {
        text[at + dir.len()..]
            .chars()
            .next()
            .is_none_or(|c| "/ :;\"'=,".contains(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_paths_only() {
        let dir = "/x/kiln-out/bin/z/z_bs.out_dir";
        assert!(contains_path("/x/kiln-out/bin/z/z_bs.out_dir/include", dir));
        assert!(contains_path("/x/kiln-out/bin/z/z_bs.out_dir", dir));
        assert!(contains_path("-I/x/kiln-out/bin/z/z_bs.out_dir -O2", dir));
        assert!(!contains_path(
            "/x/kiln-out/bin/z/z_bs.out_dir2/include",
            dir
        ));
        assert_eq!(
            replace_path(
                "a=/x/kiln-out/bin/z/z_bs.out_dir/inc:/x/kiln-out/bin/z/z_bs.out_dirx",
                dir,
                "/y"
            ),
            "a=/y/inc:/x/kiln-out/bin/z/z_bs.out_dirx"
        );
    }
}
