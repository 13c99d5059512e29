//! Which parts of the staged exec root become read-only mounts (namespaces mode).
//!
//! The exec root itself stays writable (tools write scratch files next to their outputs, as
//! in Bazel's sandbox), but no input may be written. A directory is *writable* when it is the
//! exec root, the working directory, an output directory, or an ancestor of one of those or
//! of an output file. Every input then lies either below a topmost non-writable directory,
//! which becomes one recursive read-only bind mount, or directly in a writable directory,
//! in which case the file gets its own read-only bind mount. Pure: no I/O.

use std::collections::{BTreeSet, HashSet};

use crate::SandboxRequest;

/// Exec-root-relative paths (directories and files) to bind read-only onto themselves,
/// sorted and disjoint.
pub(crate) fn read_only_mounts(req: &SandboxRequest) -> Vec<String> {
    let mut writable: HashSet<&str> = HashSet::new();
    writable.insert("");
    for out in &req.outputs {
        add_ancestors(&mut writable, out);
    }
    for dir in req.output_dirs.iter().chain([&req.working_directory]) {
        writable.insert(dir);
        add_ancestors(&mut writable, dir);
    }
    let mut mounts = BTreeSet::new();
    let entries = req.inputs.iter().map(|i| (i.path.as_str(), false));
    for (path, is_dir) in entries.chain(req.input_dirs.iter().map(|d| (d.as_str(), true))) {
        let topmost = dir_prefixes(path, is_dir).find(|dir| !writable.contains(dir));
        match topmost {
            Some(dir) => mounts.insert(dir.to_string()),
            None if !is_dir => mounts.insert(path.to_string()),
            None => false,
        };
    }
    mounts.into_iter().collect()
}

/// Inserts every proper ancestor directory of `path` (not `""`).
fn add_ancestors<'a>(set: &mut HashSet<&'a str>, path: &'a str) {
    for (i, _) in path.match_indices('/') {
        set.insert(&path[..i]);
    }
}

/// The directories on the way to `path`, top first; `path` itself too if it is a directory.
fn dir_prefixes(path: &str, is_dir: bool) -> impl Iterator<Item = &str> {
    let own = is_dir.then_some(path);
    path.match_indices('/')
        .map(move |(i, _)| &path[..i])
        .chain(own)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InputFile;

    fn plan(inputs: &[&str], outputs: &[&str], output_dirs: &[&str], wd: &str) -> Vec<String> {
        let req = SandboxRequest {
            inputs: inputs
                .iter()
                .map(|p| InputFile {
                    path: p.to_string(),
                    source: "/dev/null".into(),
                    executable: false,
                    immutable: false,
                })
                .collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            output_dirs: output_dirs.iter().map(|s| s.to_string()).collect(),
            working_directory: wd.into(),
            ..Default::default()
        };
        read_only_mounts(&req)
    }

    #[test]
    fn subtrees_without_outputs_are_one_mount() {
        assert_eq!(
            plan(
                &["src/a/x.c", "src/a/y.c", "src/b/z.c", "top.txt"],
                &["out/x.o"],
                &[],
                ""
            ),
            ["src", "top.txt"]
        );
    }

    #[test]
    fn inputs_next_to_outputs_are_file_mounts() {
        assert_eq!(
            plan(
                &["pkg/a.go", "pkg/b.go", "pkg/sub/c.go"],
                &["pkg/a.a"],
                &[],
                ""
            ),
            ["pkg/a.go", "pkg/b.go", "pkg/sub"]
        );
    }

    #[test]
    fn working_directory_and_output_dirs_stay_writable() {
        assert_eq!(
            plan(&["w/in.txt", "t/in.txt", "t/deep/f"], &[], &["t/tree"], "w"),
            ["t/deep", "t/in.txt", "w/in.txt"]
        );
    }
}
