//! Kiln's feature resolution (resolver 2, and resolver 1 where a workspace selects it) against
//! cargo's own, on real workspaces: every distinct
//! (package, feature set) `cargo tree -e features`-style output shows for a normal build
//! (`-e normal,build`) and a test build (`-e normal,build,dev`) is exactly what Kiln builds, and
//! nothing more. The workspaces are examples/rust and Kiln's own (some 300 crates with build
//! scripts, proc-macros, optional and target-specific dependencies, `dep:` and `?/` features),
//! and a small resolver-1 workspace built here.

#![allow(clippy::disallowed_methods)] // The reference is the real cargo.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kiln_rules::rust::crates::{metadata, resolver_version};

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

/// Checks Kiln's builds against cargo's for a normal and a test build; returns Kiln's normal
/// builds.
fn check(dir: &Path) -> Builds {
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
    let cfg: Vec<String> = run(dir, "rustc", &["--print", "cfg"])
        .lines()
        .map(str::to_string)
        .collect();
    let platform = metadata::HostPlatform::new(&host, &cfg);
    let resolved = metadata::parse(&json, &platform, &|root| {
        let text = std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string())?;
        resolver_version::of_root_manifest(&text, "Cargo.toml")
    })
    .expect("metadata parses");
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
    let mut normal = Builds::new();
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
        if !test {
            normal = kiln;
        }
    }
    normal
}

#[test]
fn example_workspace_features_match_cargo() {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rust"));
}

#[test]
fn kilns_own_workspace_features_match_cargo() {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
}

/// A workspace on resolver 1 (edition 2018, no `resolver` key) whose binary uses a crate from
/// its code, its build script and its tests with three different features, the build script's
/// feature turning on an optional dependency: cargo builds that crate once, with the union.
/// The same workspace on resolver 2 keeps code and build script apart (two builds).
#[test]
fn resolver_1_workspaces_unify_features_as_cargo_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    let shared = |features: &str| {
        format!(
            "{{ path = \"../../shared\", default-features = false, features = [\"{features}\"] }}"
        )
    };
    write(
        "ws/app/Cargo.toml",
        &format!(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2018\"\n\n\
             [dependencies]\nshared = {}\n\n[build-dependencies]\nshared = {}\n\n\
             [dev-dependencies]\nshared = {}\n",
            shared("code"),
            shared("script"),
            shared("tests")
        ),
    );
    write("ws/app/src/main.rs", "fn main() {}\n");
    write("ws/app/build.rs", "fn main() {}\n");
    write(
        "shared/Cargo.toml",
        "[package]\nname = \"shared\"\nversion = \"0.1.0\"\nedition = \"2018\"\n\n\
         [dependencies]\nextra = { path = \"../extra\", optional = true }\n\n\
         [features]\ndefault = []\ncode = []\nscript = [\"extra\"]\ntests = []\n",
    );
    write("shared/src/lib.rs", "");
    write(
        "extra/Cargo.toml",
        "[package]\nname = \"extra\"\nversion = \"0.1.0\"\nedition = \"2018\"\n",
    );
    write("extra/src/lib.rs", "");
    let builds_of_shared = |resolver: &str| {
        write(
            "ws/Cargo.toml",
            &format!("[workspace]\nmembers = [\"app\"]\n{resolver}"),
        );
        run(
            &root.join("ws"),
            env!("CARGO"),
            &["generate-lockfile", "--offline"],
        );
        check(&root.join("ws"))
            .iter()
            .filter(|(id, _)| id.starts_with("shared "))
            .count()
    };
    assert_eq!(
        builds_of_shared(""),
        1,
        "resolver 1: one build, every feature"
    );
    assert_eq!(
        builds_of_shared("resolver = \"2\"\n"),
        2,
        "resolver 2: two builds"
    );
}
