//! `cargo metadata --filter-platform <host>` read into what BUILD generation needs: every
//! non-workspace package with its library (or proc-macro) target, build script, and its builds
//! ([`variants`]): cargo's feature resolver run by Kiln ([`features`]: version 2, or version 1
//! when the workspace's root manifest selects it, see [`resolver_version`]) over the package graph
//! the metadata describes (its `[features]` tables and declared dependencies, limited to the edges
//! cargo's own resolve kept for the host platform). `cargo metadata`'s `features` in `resolve` are
//! cargo's unified answer (one set per package), which is what resolver 2 narrows.
//!
//! [`resolver_version`]: super::resolver_version
//!
//! [`features`]: super::features
//! [`variants`]: super::variants

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::features::{self, DepKind as EdgeKind, Edge, For, Graph};
use super::resolver_version::ResolverVersion;
use super::variants::{self, Role};

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    resolve: Option<Resolve>,
    #[serde(default)]
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    source: Option<String>,
    manifest_path: PathBuf,
    links: Option<String>,
    targets: Vec<Target>,
    #[serde(default)]
    authors: Vec<String>,
    description: Option<String>,
    homepage: Option<String>,
    repository: Option<String>,
    license: Option<String>,
    license_file: Option<String>,
    rust_version: Option<String>,
    readme: Option<String>,
    #[serde(default)]
    features: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    dependencies: Vec<ManifestDep>,
}

/// A dependency as the package's manifest declares it.
#[derive(Deserialize)]
struct ManifestDep {
    name: String,
    kind: Option<String>,
    rename: Option<String>,
    #[serde(default)]
    optional: bool,
    #[serde(default = "yes")]
    uses_default_features: bool,
    #[serde(default)]
    features: Vec<String>,
    target: Option<String>,
}

fn yes() -> bool {
    true
}

impl Package {
    /// The `CARGO_PKG_*` values cargo sets from the manifest (besides name and version), each
    /// empty when the manifest leaves it out; `AUTHORS` is colon-separated, as cargo joins it.
    fn manifest_env(&self) -> BTreeMap<String, String> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        [
            ("CARGO_PKG_AUTHORS", self.authors.join(":")),
            ("CARGO_PKG_DESCRIPTION", text(&self.description)),
            ("CARGO_PKG_HOMEPAGE", text(&self.homepage)),
            ("CARGO_PKG_REPOSITORY", text(&self.repository)),
            ("CARGO_PKG_LICENSE", text(&self.license)),
            ("CARGO_PKG_LICENSE_FILE", text(&self.license_file)),
            ("CARGO_PKG_RUST_VERSION", text(&self.rust_version)),
            ("CARGO_PKG_README", text(&self.readme)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[derive(Deserialize)]
struct Target {
    kind: Vec<String>,
    name: String,
    src_path: PathBuf,
    edition: String,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    #[serde(default)]
    deps: Vec<NodeDep>,
}

#[derive(Deserialize)]
struct NodeDep {
    name: String,
    pkg: String,
    #[serde(default)]
    dep_kinds: Vec<DepKind>,
}

#[derive(Deserialize)]
struct DepKind {
    kind: Option<String>,
    target: Option<String>,
}

/// A crate's target as BUILD generation renders it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrateTarget {
    /// Crate name (`-` already `_`).
    pub crate_name: String,
    /// Root file relative to the package directory.
    pub root: String,
    /// Edition.
    pub edition: String,
}

/// A dependency edge as the dependent's code names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    /// Index of the package depended on (in [`Resolved::packages`]).
    pub package: usize,
    /// Which of its builds (index into [`ResolvedPackage::variants`]).
    pub variant: usize,
    /// The name the dependent's code uses (`extern crate` name; differs when renamed).
    pub name: String,
}

/// One build of a package: its features and the builds of its dependencies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Suffix of its target names (`""` for the build named after the crate, else `_host`,
    /// `_test` or `_test_host`).
    pub suffix: String,
    /// Enabled features, sorted.
    pub features: Vec<String>,
    /// Normal dependencies.
    pub deps: Vec<Dep>,
    /// Build dependencies (of the build script).
    pub build_deps: Vec<Dep>,
    /// Needed only by build scripts and proc-macros (not optimised, as cargo's `build-override`).
    pub host_only: bool,
    /// The roles it serves (normal or test build, host or target).
    pub roles: Vec<Role>,
}

/// One external package, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Its `source` (registry, git).
    pub source: String,
    /// Directory cargo unpacked it in (for reading only; Kiln builds from its own verified copy).
    pub dir: PathBuf,
    /// `links`.
    pub links: Option<String>,
    /// The library or proc-macro target.
    pub lib: Option<CrateTarget>,
    /// Whether the library is a proc-macro.
    pub proc_macro: bool,
    /// The build script.
    pub build_script: Option<CrateTarget>,
    /// Its builds; the first is the one named after the crate (`@crates//:serde`).
    pub variants: Vec<Variant>,
    /// The build a workspace member's build script or proc-macro uses instead of the first, when
    /// it differs.
    pub host_twin: Option<usize>,
    /// The build a workspace member's `rust_test` uses instead of the first, when it differs.
    pub test_twin: Option<usize>,
    /// `CARGO_PKG_*` from its manifest (authors, description, ...), for its crate and build script.
    pub manifest_env: BTreeMap<String, String>,
}

/// The external packages and which of them the workspace's members use directly.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// Every non-workspace package.
    pub packages: Vec<ResolvedPackage>,
    /// Packages a workspace member depends on (normal, build or dev), with the names the members
    /// use (their first build).
    pub direct: Vec<Dep>,
    /// The workspace members' manifests (the resolution depends on them).
    pub member_manifests: Vec<PathBuf>,
    /// Each member's direct external dependencies, for crate_universe's `defs.bzl` macros.
    pub members: Vec<MemberDeps>,
}

/// A workspace member's direct dependencies on external packages, by crate_universe's kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberDeps {
    /// The member's directory relative to the cargo workspace root (`""` for the root).
    pub dir: String,
    /// `(kind, package index, name the member's code uses)`, kind being one of crate_universe's
    /// `normal`, `normal_dev`, `proc_macro`, `proc_macro_dev`, `build`, `build_proc_macro`.
    pub deps: Vec<(&'static str, usize, String)>,
}

/// The platform crates are resolved for: its target triple and what `rustc --print cfg` says.
#[derive(Clone, Debug)]
pub struct HostPlatform {
    triple: String,
    cfg: Vec<cargo_platform::Cfg>,
}

impl HostPlatform {
    /// The platform `triple` with the `rustc --print cfg` lines `cfg_lines`.
    pub fn new(triple: &str, cfg_lines: &[String]) -> HostPlatform {
        HostPlatform {
            triple: triple.to_string(),
            cfg: cfg_lines.iter().filter_map(|l| l.parse().ok()).collect(),
        }
    }

    /// Whether a dependency declared under `[target.<target>]` (a `cfg(...)` expression or a
    /// target triple) applies here, as cargo decides it. `cargo metadata --filter-platform`
    /// keeps a package's every declaration of a dependency once one of them applies, so
    /// `[target.'cfg(target_arch = "wasm32")'.dependencies] getrandom = { features =
    /// ["wasm_js"] }` must be dropped here on x86_64. A target cargo could not parse either
    /// (it refuses such manifests) is kept.
    pub fn is_active(&self, target: &str) -> bool {
        match target.parse::<cargo_platform::Platform>() {
            Ok(platform) => platform.matches(&self.triple, &self.cfg),
            Err(_) => true,
        }
    }
}

/// Reads `cargo metadata` JSON for `platform`; `resolver_of` gives the feature resolver of the
/// workspace whose root directory it is passed (`cargo metadata` does not say).
pub fn parse(
    json: &str,
    platform: &HostPlatform,
    resolver_of: &dyn Fn(&Path) -> Result<ResolverVersion, String>,
) -> Result<Resolved, String> {
    let meta: Metadata = serde_json::from_str(json)
        .map_err(|e| format!("`cargo metadata` printed unexpected JSON: {e}"))?;
    let resolve = meta
        .resolve
        .ok_or("`cargo metadata` gave no dependency resolution")?;
    let nodes: BTreeMap<&str, &Node> = resolve.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    // Every package in the resolve, members included: the graph features are resolved over.
    let in_graph: Vec<&Package> = meta
        .packages
        .iter()
        .filter(|p| nodes.contains_key(p.id.as_str()))
        .collect();
    let graph_index: BTreeMap<&str, usize> = in_graph
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let is_member = |p: &Package| meta.workspace_members.contains(&p.id);
    let graph = Graph {
        packages: in_graph
            .iter()
            .map(|p| features::Package {
                features: p.features.clone(),
                deps: edges(p, nodes[p.id.as_str()], &in_graph, &graph_index, platform),
                proc_macro: lib_target(p).is_some_and(|t| t.kind.iter().any(|k| k == "proc-macro")),
                member: is_member(p),
            })
            .collect(),
    };
    let (normal, test) = match resolver_of(&meta.workspace_root)? {
        ResolverVersion::V2 => (
            features::resolve(&graph, false),
            features::resolve(&graph, true),
        ),
        ResolverVersion::V1 => (
            features::unify(&graph, false),
            features::unify(&graph, true),
        ),
    };
    let builds = variants::compute(&graph, &normal, &test);

    // External packages, numbered apart from members.
    let external: Vec<usize> = (0..in_graph.len())
        .filter(|&i| !graph.packages[i].member)
        .collect();
    let external_index: BTreeMap<usize, usize> =
        external.iter().enumerate().map(|(e, &g)| (g, e)).collect();
    let convert = |deps: &[variants::VariantDep]| -> Vec<Dep> {
        deps.iter()
            .filter_map(|d| {
                Some(Dep {
                    package: *external_index.get(&d.package)?,
                    variant: d.variant,
                    name: d.name.clone(),
                })
            })
            .collect()
    };
    let mut packages = Vec::new();
    for &g in &external {
        let package = in_graph[g];
        let dir = package
            .manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let relative = |t: &Target| -> Result<String, String> {
            t.src_path
                .strip_prefix(&dir)
                .map(|p| p.to_string_lossy().into_owned())
                .map_err(|_| {
                    format!(
                        "`{} {}`: target `{}` lies outside its package",
                        package.name, package.version, t.name
                    )
                })
        };
        let lib = match lib_target(package) {
            Some(t) => Some(CrateTarget {
                crate_name: t.name.replace('-', "_"),
                root: relative(t)?,
                edition: t.edition.clone(),
            }),
            None => None,
        };
        let build_script = match package
            .targets
            .iter()
            .find(|t| t.kind.iter().any(|k| k == "custom-build"))
        {
            Some(t) => Some(CrateTarget {
                crate_name: "build_script_build".to_string(),
                root: relative(t)?,
                edition: t.edition.clone(),
            }),
            None => None,
        };
        let proc_macro = graph.packages[g].proc_macro;
        let role = |test: bool, side: features::For| Role { test, side };
        let host_twin = (!proc_macro)
            .then(|| builds.twin(g, role(false, features::For::Host)))
            .flatten();
        let test_side = if proc_macro {
            features::For::Host
        } else {
            features::For::Target
        };
        packages.push(ResolvedPackage {
            name: package.name.clone(),
            version: package.version.clone(),
            source: package.source.clone().unwrap_or_default(),
            dir,
            links: package.links.clone(),
            proc_macro,
            lib,
            build_script,
            variants: builds.of[g]
                .iter()
                .map(|v| Variant {
                    suffix: v.suffix.to_string(),
                    features: v.features.clone(),
                    deps: convert(&v.deps),
                    build_deps: convert(&v.build_deps),
                    host_only: v.host_only,
                    roles: v.roles.clone(),
                })
                .collect(),
            host_twin,
            test_twin: builds.twin(g, role(true, test_side)),
            manifest_env: package.manifest_env(),
        });
    }
    let mut direct = Vec::new();
    for package in &graph.packages {
        if !package.member {
            continue;
        }
        for edge in &package.deps {
            let Some(&e) = external_index.get(&edge.to) else {
                continue;
            };
            let dep = Dep {
                package: e,
                variant: 0,
                name: edge.extern_name.clone(),
            };
            if !direct.contains(&dep) && !packages[e].variants.is_empty() {
                direct.push(dep);
            }
        }
    }
    let member_manifests = meta
        .packages
        .iter()
        .filter(|p| is_member(p))
        .map(|p| p.manifest_path.clone())
        .collect();
    let mut members = Vec::new();
    for (g, package) in in_graph.iter().enumerate() {
        if !graph.packages[g].member {
            continue;
        }
        let dir = package
            .manifest_path
            .parent()
            .and_then(|d| d.strip_prefix(&meta.workspace_root).ok())
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut deps = Vec::new();
        let live = normal
            .edges(&graph, g, For::Target, false)
            .into_iter()
            .chain(
                test.edges(&graph, g, For::Target, true)
                    .into_iter()
                    .filter(|(edge, _)| edge.kind == EdgeKind::Dev),
            );
        for (edge, _) in live {
            let Some(&e) = external_index.get(&edge.to) else {
                continue;
            };
            let proc_macro = graph.packages[edge.to].proc_macro;
            let kind = match (edge.kind, proc_macro) {
                (EdgeKind::Normal, false) => "normal",
                (EdgeKind::Normal, true) => "proc_macro",
                (EdgeKind::Dev, false) => "normal_dev",
                (EdgeKind::Dev, true) => "proc_macro_dev",
                (EdgeKind::Build, false) => "build",
                (EdgeKind::Build, true) => "build_proc_macro",
            };
            let dep = (kind, e, edge.extern_name.clone());
            if !deps.contains(&dep) && packages[e].lib.is_some() && !packages[e].variants.is_empty()
            {
                deps.push(dep);
            }
        }
        members.push(MemberDeps { dir, deps });
    }
    Ok(Resolved {
        packages,
        direct,
        member_manifests,
        members,
    })
}

fn lib_target(package: &Package) -> Option<&Target> {
    package.targets.iter().find(|t| {
        t.kind
            .iter()
            .any(|k| matches!(k.as_str(), "lib" | "rlib" | "proc-macro"))
    })
}

/// The package's declared dependencies that apply on `platform` (see the loop) and that cargo's
/// resolve kept,
/// each matched to the package it resolved to: same package name, the same kind and platform in
/// the resolve's `dep_kinds`, and, when renamed, the same name in code.
fn edges(
    package: &Package,
    node: &Node,
    in_graph: &[&Package],
    graph_index: &BTreeMap<&str, usize>,
    platform: &HostPlatform,
) -> Vec<Edge> {
    let active = |d: &ManifestDep| d.target.as_deref().is_none_or(|t| platform.is_active(t));
    let mut edges = Vec::new();
    for declared in &package.dependencies {
        // A declaration for another platform is dropped when a sibling declaration of the same
        // dependency applies here. When none does, cargo kept the dependency for a reason
        // Kiln's cfg cannot see (a `--cfg` from rustflags in `.cargo/config.toml`), and the
        // declaration stays, as cargo's resolve says.
        if !active(declared)
            && package.dependencies.iter().any(|other| {
                active(other)
                    && other.name == declared.name
                    && other.kind == declared.kind
                    && other.rename == declared.rename
            })
        {
            continue;
        }
        let kind = match declared.kind.as_deref() {
            None => EdgeKind::Normal,
            Some("build") => EdgeKind::Build,
            Some("dev") => EdgeKind::Dev,
            Some(_) => continue,
        };
        let found = node.deps.iter().find_map(|nd| {
            let &to = graph_index.get(nd.pkg.as_str())?;
            if in_graph[to].name != declared.name {
                return None;
            }
            if let Some(rename) = &declared.rename {
                if nd.name != rename.replace('-', "_") {
                    return None;
                }
            }
            let same_kind = nd
                .dep_kinds
                .iter()
                .any(|k| k.kind == declared.kind && k.target == declared.target);
            same_kind.then_some((to, nd.name.clone()))
        });
        let Some((to, extern_name)) = found else {
            continue;
        };
        edges.push(Edge {
            to,
            name_in_toml: declared
                .rename
                .clone()
                .unwrap_or_else(|| declared.name.clone()),
            extern_name,
            kind,
            optional: declared.optional,
            default_features: declared.uses_default_features,
            features: declared.features.clone(),
        });
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `app` uses serde with `derive` from its code and serde_derive (renamed) from its tests;
    /// serde's `derive` turns on its optional serde_derive; `app`'s build script uses serde with
    /// `std` only, a different set: serde is built twice.
    const JSON: &str = r#"{
  "packages": [
    {"id": "path+file:///w#app@0.1.0", "name": "app", "version": "0.1.0", "source": null,
     "manifest_path": "/w/Cargo.toml", "links": null,
     "targets": [{"kind": ["bin"], "name": "app", "src_path": "/w/src/main.rs", "edition": "2021"}],
     "dependencies": [
       {"name": "serde", "kind": null, "rename": null, "optional": false, "uses_default_features": false, "features": ["derive"], "target": null},
       {"name": "serde", "kind": "build", "rename": null, "optional": false, "uses_default_features": false, "features": ["std"], "target": null},
       {"name": "serde_derive", "kind": "dev", "rename": "derive-it", "optional": false, "uses_default_features": true, "features": [], "target": null},
       {"name": "winapi", "kind": null, "rename": null, "optional": false, "uses_default_features": true, "features": [], "target": "cfg(windows)"}
     ]},
    {"id": "registry+r#serde@1.0.1", "name": "serde", "version": "1.0.1", "source": "registry+r",
     "manifest_path": "/reg/serde-1.0.1/Cargo.toml", "links": null,
     "authors": ["A <a@x>", "B"], "description": "A \"serialization\"\nframework", "license": "MIT",
     "rust_version": "1.31",
     "features": {"std": [], "derive": ["serde_derive"], "serde_derive": ["dep:serde_derive"]},
     "dependencies": [
       {"name": "serde_derive", "kind": null, "rename": null, "optional": true, "uses_default_features": true, "features": [], "target": null}
     ],
     "targets": [{"kind": ["lib"], "name": "serde", "src_path": "/reg/serde-1.0.1/src/lib.rs", "edition": "2018"},
                 {"kind": ["custom-build"], "name": "build-script-build", "src_path": "/reg/serde-1.0.1/build.rs", "edition": "2018"}]},
    {"id": "registry+r#serde_derive@1.0.1", "name": "serde_derive", "version": "1.0.1", "source": "registry+r",
     "manifest_path": "/reg/serde_derive-1.0.1/Cargo.toml", "links": null,
     "targets": [{"kind": ["proc-macro"], "name": "serde_derive", "src_path": "/reg/serde_derive-1.0.1/src/lib.rs", "edition": "2015"}]}
  ],
  "workspace_members": ["path+file:///w#app@0.1.0"],
  "resolve": {"nodes": [
    {"id": "path+file:///w#app@0.1.0", "features": [],
     "deps": [{"name": "serde", "pkg": "registry+r#serde@1.0.1", "dep_kinds": [{"kind": null, "target": null}, {"kind": "build", "target": null}]},
              {"name": "derive_it", "pkg": "registry+r#serde_derive@1.0.1", "dep_kinds": [{"kind": "dev", "target": null}]}]},
    {"id": "registry+r#serde@1.0.1", "features": ["std", "derive", "serde_derive"],
     "deps": [{"name": "serde_derive", "pkg": "registry+r#serde_derive@1.0.1", "dep_kinds": [{"kind": null, "target": null}]}]},
    {"id": "registry+r#serde_derive@1.0.1", "features": [], "deps": []}
  ]}
}"#;

    /// x86_64 Linux as `rustc --print cfg` describes it.
    fn linux() -> HostPlatform {
        let cfg: Vec<String> = [
            "debug_assertions",
            "panic=\"unwind\"",
            "target_arch=\"x86_64\"",
            "target_endian=\"little\"",
            "target_env=\"gnu\"",
            "target_family=\"unix\"",
            "target_os=\"linux\"",
            "target_pointer_width=\"64\"",
            "target_vendor=\"unknown\"",
            "unix",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        HostPlatform::new("x86_64-unknown-linux-gnu", &cfg)
    }

    #[test]
    fn target_expressions_are_judged_as_cargo_judges_them() {
        let host = linux();
        for (target, want) in [
            ("cfg(unix)", true),
            ("cfg(windows)", false),
            ("cfg(not(target_arch = \"wasm32\"))", true),
            ("cfg(target_arch = \"wasm32\")", false),
            (
                "cfg(all(target_os = \"linux\", target_env = \"gnu\"))",
                true,
            ),
            (
                "cfg(any(target_os = \"macos\", target_os = \"ios\"))",
                false,
            ),
            ("x86_64-unknown-linux-gnu", true),
            ("aarch64-apple-darwin", false),
        ] {
            assert_eq!(host.is_active(target), want, "{target}");
        }
    }

    /// A dependency declared twice, for wasm32 with a feature and for everything else without
    /// it: `cargo metadata --filter-platform` keeps both declarations' kinds in the resolve,
    /// but on x86_64 only the second applies (zip 9's `getrandom`, `wasm_js` for wasm32 only).
    /// One declared only for a cfg that cargo saw but Kiln does not keeps its declaration.
    #[test]
    fn a_declaration_for_another_platform_adds_no_features() {
        let json = r#"{
  "packages": [
    {"id": "path+file:///w#app@0.1.0", "name": "app", "version": "0.1.0", "source": null,
     "manifest_path": "/w/Cargo.toml", "links": null,
     "targets": [{"kind": ["bin"], "name": "app", "src_path": "/w/src/main.rs", "edition": "2021"}],
     "dependencies": [
       {"name": "rng", "kind": null, "rename": null, "optional": false, "uses_default_features": false, "features": [], "target": "cfg(not(target_arch = \"wasm32\"))"},
       {"name": "rng", "kind": null, "rename": null, "optional": false, "uses_default_features": false, "features": ["wasm_js"], "target": "cfg(target_arch = \"wasm32\")"},
       {"name": "extra", "kind": null, "rename": null, "optional": false, "uses_default_features": false, "features": ["f"], "target": "cfg(kiln_from_rustflags)"}
     ]},
    {"id": "registry+r#extra@1.0.0", "name": "extra", "version": "1.0.0", "source": "registry+r",
     "manifest_path": "/reg/extra-1.0.0/Cargo.toml", "links": null,
     "features": {"f": []},
     "targets": [{"kind": ["lib"], "name": "extra", "src_path": "/reg/extra-1.0.0/src/lib.rs", "edition": "2021"}]},
    {"id": "registry+r#rng@0.4.3", "name": "rng", "version": "0.4.3", "source": "registry+r",
     "manifest_path": "/reg/rng-0.4.3/Cargo.toml", "links": null,
     "features": {"std": [], "wasm_js": []},
     "targets": [{"kind": ["lib"], "name": "rng", "src_path": "/reg/rng-0.4.3/src/lib.rs", "edition": "2021"}]}
  ],
  "workspace_members": ["path+file:///w#app@0.1.0"],
  "resolve": {"nodes": [
    {"id": "path+file:///w#app@0.1.0", "features": [],
     "deps": [{"name": "rng", "pkg": "registry+r#rng@0.4.3", "dep_kinds": [{"kind": null, "target": "cfg(not(target_arch = \"wasm32\"))"}, {"kind": null, "target": "cfg(target_arch = \"wasm32\")"}]},
              {"name": "extra", "pkg": "registry+r#extra@1.0.0", "dep_kinds": [{"kind": null, "target": "cfg(kiln_from_rustflags)"}]}]},
    {"id": "registry+r#rng@0.4.3", "features": [], "deps": []},
    {"id": "registry+r#extra@1.0.0", "features": ["f"], "deps": []}
  ]}
}"#;
        let resolved = parse(json, &linux(), &|_| Ok(ResolverVersion::V2)).unwrap();
        let find = |name: &str| {
            resolved
                .packages
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| panic!("{name} resolved"))
        };
        let rng = find("rng");
        assert_eq!(rng.variants.len(), 1);
        assert!(
            rng.variants[0].features.is_empty(),
            "{:?}",
            rng.variants[0].features
        );
        // Declared only for a cfg Kiln does not see (a rustflags `--cfg`), yet kept by cargo:
        // the declaration and its feature stay.
        assert_eq!(find("extra").variants[0].features, ["f"]);
    }

    #[test]
    fn external_packages_with_targets_builds_and_edges() {
        let resolved = parse(JSON, &linux(), &|_| Ok(ResolverVersion::V2)).unwrap();
        assert_eq!(resolved.packages.len(), 2);
        let serde = &resolved.packages[0];
        assert_eq!(serde.lib.as_ref().unwrap().root, "src/lib.rs");
        assert_eq!(serde.build_script.as_ref().unwrap().root, "build.rs");
        let derive = Dep {
            package: 1,
            variant: 0,
            name: "serde_derive".into(),
        };
        assert_eq!(
            serde.variants,
            [
                Variant {
                    suffix: String::new(),
                    features: vec!["derive".into(), "serde_derive".into()],
                    deps: vec![derive],
                    build_deps: Vec::new(),
                    host_only: false,
                    roles: vec![
                        Role {
                            test: false,
                            side: features::For::Target
                        },
                        Role {
                            test: true,
                            side: features::For::Target
                        }
                    ],
                },
                Variant {
                    suffix: "_host".into(),
                    features: vec!["std".into()],
                    deps: Vec::new(),
                    build_deps: Vec::new(),
                    host_only: true,
                    roles: vec![
                        Role {
                            test: false,
                            side: features::For::Host
                        },
                        Role {
                            test: true,
                            side: features::For::Host
                        }
                    ],
                },
            ]
        );
        assert_eq!(serde.host_twin, Some(1));
        // The test build adds nothing to serde: no test twin.
        assert_eq!(serde.test_twin, None);
        let derive_pkg = &resolved.packages[1];
        assert!(derive_pkg.proc_macro);
        // One host build serves both serde's use and the tests' (renamed) use.
        assert_eq!(derive_pkg.variants.len(), 1);
        assert!(derive_pkg.variants[0].host_only);
        let env = &serde.manifest_env;
        assert_eq!(env["CARGO_PKG_AUTHORS"], "A <a@x>:B");
        assert_eq!(
            env["CARGO_PKG_DESCRIPTION"],
            "A \"serialization\"\nframework"
        );
        assert_eq!(env["CARGO_PKG_LICENSE"], "MIT");
        assert_eq!(env["CARGO_PKG_RUST_VERSION"], "1.31");
        assert_eq!(env["CARGO_PKG_HOMEPAGE"], "");
        assert_eq!(env.len(), 8);
        assert_eq!(
            resolved.direct,
            [
                Dep {
                    package: 0,
                    variant: 0,
                    name: "serde".into()
                },
                Dep {
                    package: 1,
                    variant: 0,
                    name: "derive_it".into()
                }
            ]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("{", &linux(), &|_| Ok(ResolverVersion::V2))
            .unwrap_err()
            .contains("cargo metadata"));
    }
}
