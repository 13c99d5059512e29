//! Kiln's resolver-2 feature resolution against cargo's own, on real workspaces: every distinct
//! (package, feature set) `cargo tree -e features`-style output shows for a normal build
//! (`-e normal,build`) and a test build (`-e normal,build,dev`) is exactly what Kiln builds, and
//! nothing more. The workspaces are examples/rust and Kiln's own (some 300 crates with build
//! scripts, proc-macros, optional and target-specific dependencies, `dep:` and `?/` features).

#![allow(clippy::disallowed_methods)] // The reference is the real cargo.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kiln_rules::rust::crates::metadata;

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn host() -> String {
    run(Path::new("."), "rustc", &["-vV"])
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

type Builds = BTreeSet<(String, Vec<String>)>;

/// cargo's builds of non-member packages: `name version` and sorted features per distinct node.
fn cargo_builds(dir: &Path, host: &str, edges: &str, members: &BTreeSet<String>) -> Builds {
    let cargo = env!("CARGO");
    let text = run(
        dir,
        cargo,
        &[
            "tree",
            "--locked",
            "--workspace",
            "--target",
            host,
            "-e",
            edges,
            "--prefix",
            "none",
            "--no-dedupe",
            "-f",
            "{p}|{f}",
        ],
    );
    text.lines()
        .filter(|l| l.contains('|'))
        .filter_map(|line| {
            let (package, features) = line.split_once('|')?;
            let mut words = package.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.trim_start_matches('v');
            let id = format!("{name} {version}");
            if members.contains(&id) {
                return None;
            }
            let mut features: Vec<String> = features
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
            features.sort();
            Some((id, features))
        })
        .collect()
}

fn check(dir: &Path) {
    let host = host();
    let json = run(
        dir,
        env!("CARGO"),
        &[
            "metadata",
            "--format-version=1",
            "--locked",
            "--filter-platform",
            &host,
        ],
    );
    let resolved = metadata::parse(&json).expect("metadata parses");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    let members: BTreeSet<String> = value["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| {
            value["workspace_members"]
                .as_array()
                .expect("members")
                .contains(&p["id"])
        })
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().expect("name"),
                p["version"].as_str().expect("version")
            )
        })
        .collect();
    for (test, edges) in [(false, "normal,build"), (true, "normal,build,dev")] {
        let kiln: Builds = resolved
            .packages
            .iter()
            .flat_map(|p| {
                p.variants
                    .iter()
                    .filter(|v| v.roles.iter().any(|r| r.test == test))
                    .map(|v| (format!("{} {}", p.name, p.version), v.features.clone()))
            })
            .collect();
        let cargo = cargo_builds(dir, &host, edges, &members);
        let only_kiln: Vec<_> = kiln.difference(&cargo).collect();
        let only_cargo: Vec<_> = cargo.difference(&kiln).collect();
        assert!(
            only_kiln.is_empty() && only_cargo.is_empty(),
            "{} ({edges}): only Kiln builds {only_kiln:#?}\nonly cargo builds {only_cargo:#?}",
            dir.display()
        );
    }
}

#[test]
fn example_workspace_features_match_cargo() {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rust"));
}

#[test]
fn kilns_own_workspace_features_match_cargo() {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
}
