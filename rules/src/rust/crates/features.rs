//! Cargo's feature resolver version 2, over the package graph `cargo metadata` reports: which
//! features and optional dependencies each package has *for the host* (build scripts, proc-macros
//! and everything they use) and *for the target* (normal code), kept apart, with dev-dependencies
//! taking part only when tests are built; and version 1 ([`unify`]), for workspaces that still
//! use it, from the same answer. Pure: no I/O.
//!
//! The facts it follows are those of cargo's `core/resolver/features.rs` with
//! `decouple_host_deps` on, and `decouple_dev_deps` on unless `dev` is asked for:
//! - every workspace member is a root with its `default` feature (as `cargo build --workspace`);
//!   a proc-macro member is activated for the host and, as cargo does, for the target too;
//! - an edge from a target package to a build-dependency or to a proc-macro leads to the host;
//!   everything below a host package stays on the host;
//! - a dependency brings its `features` and, unless `default-features = false`, its `default`;
//! - `f` enables a feature, `dep:d` an optional dependency, `d/f` the dependency (if optional, with
//!   the feature named `d` when the package has one) and its feature `f`, and `d?/f` the feature
//!   only once something else enables `d`;
//! - optional dependencies start disabled; platform filtering is left to `cargo metadata
//!   --filter-platform` (an edge absent from its resolve is not in the graph at all).

use std::collections::{BTreeMap, BTreeSet};

/// Which side of the build a package is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum For {
    /// Normal code (cargo's `NormalOrDev`).
    Target,
    /// Build scripts, proc-macros and their dependencies (cargo's `HostDep`).
    Host,
}

/// The kind of a dependency edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepKind {
    /// `[dependencies]`.
    Normal,
    /// `[build-dependencies]`.
    Build,
    /// `[dev-dependencies]` (workspace members only).
    Dev,
}

/// One dependency as the dependent's manifest declares it, resolved to a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The package depended on (index into [`Graph::packages`]).
    pub to: usize,
    /// The key in the manifest (the `rename`, else the package name): what features name it by.
    pub name_in_toml: String,
    /// The name the dependent's code uses (`extern crate` name).
    pub extern_name: String,
    /// Which table it is in.
    pub kind: DepKind,
    /// `optional = true`.
    pub optional: bool,
    /// `default-features` (true unless turned off).
    pub default_features: bool,
    /// `features = [...]`.
    pub features: Vec<String>,
}

/// One package of the graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Package {
    /// The `[features]` table, with cargo's implicit features for optional dependencies.
    pub features: BTreeMap<String, Vec<String>>,
    /// Its dependencies (those active on the host platform).
    pub deps: Vec<Edge>,
    /// Whether its library is a proc-macro.
    pub proc_macro: bool,
    /// Whether it is a workspace member.
    pub member: bool,
}

/// The package graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Every package, members included.
    pub packages: Vec<Package>,
}

/// The resolver's answer for one kind of build (normal, or with the members' dev-dependencies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activation {
    /// Enabled features of every package built, per side. A package absent here is not built on
    /// that side.
    pub features: BTreeMap<(usize, For), BTreeSet<String>>,
    /// Enabled optional dependencies (by their key in the manifest), per package and side.
    pub optional: BTreeMap<(usize, For), BTreeSet<String>>,
}

impl Activation {
    /// The edges of `package` built on side `side`, each with the side its target is built for:
    /// dev edges only when `dev` (and only members have them), optional ones only when enabled.
    pub fn edges<'g>(
        &self,
        graph: &'g Graph,
        package: usize,
        side: For,
        dev: bool,
    ) -> Vec<(&'g Edge, For)> {
        let enabled = self.optional.get(&(package, side));
        live_edges(graph, package, side, dev)
            .filter(|(edge, _)| {
                !edge.optional || enabled.is_some_and(|e| e.contains(&edge.name_in_toml))
            })
            .collect()
    }
}

/// Every edge of `package` taken into account on `side` (optional ones included), with the side
/// of the package it leads to.
fn live_edges(
    graph: &Graph,
    package: usize,
    side: For,
    dev: bool,
) -> impl Iterator<Item = (&Edge, For)> {
    graph.packages[package]
        .deps
        .iter()
        .filter(move |edge| dev || edge.kind != DepKind::Dev)
        .map(move |edge| {
            let to_side = if side == For::Target
                && (edge.kind == DepKind::Build || graph.packages[edge.to].proc_macro)
            {
                For::Host
            } else {
                side
            };
            (edge, to_side)
        })
}

/// A parsed entry of a feature list.
enum FeatureValue<'a> {
    Feature(&'a str),
    Dep(&'a str),
    DepFeature {
        dep: &'a str,
        feature: &'a str,
        weak: bool,
    },
}

fn parse_value(text: &str) -> FeatureValue<'_> {
    if let Some(dep) = text.strip_prefix("dep:") {
        return FeatureValue::Dep(dep);
    }
    match text.split_once('/') {
        Some((dep, feature)) => match dep.strip_suffix('?') {
            Some(dep) => FeatureValue::DepFeature {
                dep,
                feature,
                weak: true,
            },
            None => FeatureValue::DepFeature {
                dep,
                feature,
                weak: false,
            },
        },
        None => FeatureValue::Feature(text),
    }
}

/// Resolves features for a build of every member; `dev` includes the members' dev-dependencies
/// (a test build, as `cargo test --workspace`).
pub fn resolve(graph: &Graph, dev: bool) -> Activation {
    let mut resolver = Resolver {
        graph,
        dev,
        out: Activation::default(),
        processed: BTreeSet::new(),
        deferred: BTreeMap::new(),
    };
    for (index, package) in graph.packages.iter().enumerate() {
        if !package.member {
            continue;
        }
        let roots = resolver.defaults(index, true, &[]);
        if package.proc_macro {
            resolver.activate_package(index, For::Target, &roots);
            resolver.activate_package(index, For::Host, &roots);
        } else {
            resolver.activate_package(index, For::Target, &roots);
        }
    }
    resolver.out
}

/// Cargo's feature resolver version 1 for one kind of build (`dev`: with the members'
/// dev-dependencies built): each package has one set of features and of optional dependencies,
/// the union of what [`resolve`] finds for its host and its target side with dev-dependencies on
/// (version 1 lets them add features even to a build without tests), on each side it is built.
/// Its host and target builds then agree, so [`variants`](super::variants) makes them one build,
/// as cargo does. One difference from cargo remains: cargo's version 1 also adds what
/// dependencies declared only for other platforms ask for (e.g. `tokio`'s `windows-sys`), and
/// the graph holds only the host platform's edges.
pub fn unify(graph: &Graph, dev: bool) -> Activation {
    let sided = resolve(graph, true);
    let mut features: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for ((package, _), enabled) in &sided.features {
        features
            .entry(*package)
            .or_default()
            .extend(enabled.iter().cloned());
    }
    let mut optional: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for ((package, _), enabled) in &sided.optional {
        optional
            .entry(*package)
            .or_default()
            .extend(enabled.iter().cloned());
    }
    let mut out = Activation::default();
    let mut pending: Vec<(usize, For)> = Vec::new();
    for (index, package) in graph.packages.iter().enumerate() {
        if package.member {
            pending.push((index, For::Target));
            if package.proc_macro {
                pending.push((index, For::Host));
            }
        }
    }
    while let Some((package, side)) = pending.pop() {
        if out.features.contains_key(&(package, side)) {
            continue;
        }
        let enabled = features.get(&package).cloned().unwrap_or_default();
        out.features.insert((package, side), enabled);
        if let Some(deps) = optional.get(&package) {
            out.optional.insert((package, side), deps.clone());
        }
        let next: Vec<(usize, For)> = out
            .edges(graph, package, side, dev)
            .into_iter()
            .map(|(edge, to_side)| (edge.to, to_side))
            .collect();
        pending.extend(next);
    }
    out
}

struct Resolver<'g> {
    graph: &'g Graph,
    dev: bool,
    out: Activation,
    /// Packages whose non-optional dependencies were walked, per side.
    processed: BTreeSet<(usize, For)>,
    /// `d?/f` waiting for `d`: (package, side, d) → features of `d`.
    deferred: BTreeMap<(usize, For, String), BTreeSet<String>>,
}

impl<'g> Resolver<'g> {
    /// What a dependency edge (or a root) asks of `package`: `features`, plus `default` when
    /// default features are on and the package has that feature.
    fn defaults(&self, package: usize, default_features: bool, features: &[String]) -> Vec<String> {
        let mut values = features.to_vec();
        if default_features
            && self.graph.packages[package]
                .features
                .contains_key("default")
        {
            values.push("default".to_string());
        }
        values
    }

    fn activate_package(&mut self, package: usize, side: For, values: &[String]) {
        self.out.features.entry((package, side)).or_default();
        for value in values {
            self.activate_value(package, side, value);
        }
        if !self.processed.insert((package, side)) {
            return;
        }
        let edges: Vec<(&'g Edge, For)> = live_edges(self.graph, package, side, self.dev).collect();
        for (edge, to_side) in edges {
            if edge.optional {
                continue;
            }
            let values = self.defaults(edge.to, edge.default_features, &edge.features);
            self.activate_package(edge.to, to_side, &values);
        }
    }

    fn activate_value(&mut self, package: usize, side: For, value: &str) {
        match parse_value(value) {
            FeatureValue::Feature(feature) => self.activate_feature(package, side, feature),
            FeatureValue::Dep(dep) => self.activate_dependency(package, side, dep),
            FeatureValue::DepFeature { dep, feature, weak } => {
                self.activate_dep_feature(package, side, dep, feature, weak)
            }
        }
    }

    fn activate_feature(&mut self, package: usize, side: For, feature: &str) {
        let enabled = self.out.features.entry((package, side)).or_default();
        if !enabled.insert(feature.to_string()) {
            return;
        }
        let graph = self.graph;
        if let Some(values) = graph.packages[package].features.get(feature) {
            for value in values {
                self.activate_value(package, side, value);
            }
        }
    }

    fn activate_dependency(&mut self, package: usize, side: For, dep: &str) {
        self.out
            .optional
            .entry((package, side))
            .or_default()
            .insert(dep.to_string());
        let waiting = self.deferred.remove(&(package, side, dep.to_string()));
        let edges: Vec<(&'g Edge, For)> = live_edges(self.graph, package, side, self.dev)
            .filter(|(edge, _)| edge.name_in_toml == dep)
            .collect();
        for (edge, to_side) in edges {
            for feature in waiting.iter().flatten() {
                self.activate_value(edge.to, to_side, feature);
            }
            let values = self.defaults(edge.to, edge.default_features, &edge.features);
            self.activate_package(edge.to, to_side, &values);
        }
    }

    fn activate_dep_feature(
        &mut self,
        package: usize,
        side: For,
        dep: &str,
        feature: &str,
        weak: bool,
    ) {
        let edges: Vec<(&'g Edge, For)> = live_edges(self.graph, package, side, self.dev)
            .filter(|(edge, _)| edge.name_in_toml == dep)
            .collect();
        for (edge, to_side) in edges {
            if edge.optional {
                let enabled = self
                    .out
                    .optional
                    .get(&(package, side))
                    .is_some_and(|d| d.contains(dep));
                if weak && !enabled {
                    self.deferred
                        .entry((package, side, dep.to_string()))
                        .or_default()
                        .insert(feature.to_string());
                    continue;
                }
                self.activate_dependency(package, side, dep);
                if !weak && self.graph.packages[package].features.contains_key(dep) {
                    self.activate_feature(package, side, dep);
                }
            }
            self.activate_value(edge.to, to_side, feature);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn edge(to: usize, name: &str, kind: DepKind, optional: bool, features: &[&str]) -> Edge {
        Edge {
            to,
            name_in_toml: name.to_string(),
            extern_name: name.replace('-', "_"),
            kind,
            optional,
            default_features: true,
            features: features.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The enabled features of every built (package, side) of resolver 2, as text.
    fn show(graph: &Graph, names: &[&str], dev: bool) -> String {
        describe(&resolve(graph, dev), names)
    }

    /// The enabled features of every built (package, side), as text.
    fn describe(activation: &Activation, names: &[&str]) -> String {
        let mut text = String::new();
        for ((package, side), enabled) in &activation.features {
            let list: Vec<&str> = enabled.iter().map(String::as_str).collect();
            text.push_str(&format!(
                "{} {side:?}: [{}]\n",
                names[*package],
                list.join(", ")
            ));
        }
        text
    }

    /// A member `app` using `lib` from its code with feature `a`, from its build script with
    /// feature `b`, and from its tests with feature `c`.
    fn split_graph() -> Graph {
        let lib = Package {
            features: features(&[("default", &["a"]), ("a", &[]), ("b", &[]), ("c", &[])]),
            ..Package::default()
        };
        let mut no_default = edge(1, "lib", DepKind::Normal, false, &["a"]);
        no_default.default_features = false;
        let mut dev = edge(1, "lib", DepKind::Dev, false, &["c"]);
        dev.default_features = false;
        let mut build = edge(1, "lib", DepKind::Build, false, &["b"]);
        build.default_features = false;
        let app = Package {
            member: true,
            deps: vec![no_default, build, dev],
            ..Package::default()
        };
        Graph {
            packages: vec![app, lib],
        }
    }

    #[test]
    fn host_and_target_are_resolved_apart_and_dev_only_for_tests() {
        let graph = split_graph();
        expect_test::expect![[r#"
            app Target: []
            lib Target: [a]
            lib Host: [b]
        "#]]
        .assert_eq(&show(&graph, &["app", "lib"], false));
        expect_test::expect![[r#"
            app Target: []
            lib Target: [a, c]
            lib Host: [b]
        "#]]
        .assert_eq(&show(&graph, &["app", "lib"], true));
    }

    #[test]
    fn proc_macro_dependencies_are_host_all_the_way_down() {
        // app -> derive (proc-macro) -> syn[full]; app -> syn[parsing]. Below derive, `util`
        // stays on the host too.
        let syn = Package {
            features: features(&[("full", &[]), ("parsing", &[])]),
            deps: vec![edge(3, "util", DepKind::Normal, false, &[])],
            ..Package::default()
        };
        let derive = Package {
            proc_macro: true,
            deps: vec![edge(1, "syn", DepKind::Normal, false, &["full"])],
            ..Package::default()
        };
        let app = Package {
            member: true,
            deps: vec![
                edge(2, "derive", DepKind::Normal, false, &[]),
                edge(1, "syn", DepKind::Normal, false, &["parsing"]),
            ],
            ..Package::default()
        };
        let graph = Graph {
            packages: vec![app, syn, derive, Package::default()],
        };
        expect_test::expect![[r#"
            app Target: []
            syn Target: [parsing]
            syn Host: [full]
            derive Host: []
            util Target: []
            util Host: []
        "#]]
        .assert_eq(&show(&graph, &["app", "syn", "derive", "util"], false));
    }

    #[test]
    fn optional_dependencies_dep_syntax_and_weak_features() {
        // lib: optional `log` (implicit feature `log`), optional `serde` behind `dep:`, and
        // `serde?/std` from `std`, which waits until something enables `serde`.
        let lib = Package {
            features: features(&[
                ("log", &["dep:log"]),
                ("std", &["serde?/std"]),
                ("ser", &["dep:serde"]),
                ("logging", &["log/max"]),
            ]),
            deps: vec![
                edge(2, "log", DepKind::Normal, true, &[]),
                edge(3, "serde", DepKind::Normal, true, &[]),
            ],
            ..Package::default()
        };
        let log = Package {
            features: features(&[("max", &[])]),
            ..Package::default()
        };
        let serde = Package {
            features: features(&[("std", &[]), ("default", &["std"])]),
            ..Package::default()
        };
        let names = ["app", "lib", "log", "serde"];
        let with = |app_features: &[&str]| {
            let mut dep = edge(1, "lib", DepKind::Normal, false, app_features);
            dep.default_features = false;
            let app = Package {
                member: true,
                deps: vec![dep],
                ..Package::default()
            };
            let graph = Graph {
                packages: vec![app, lib.clone(), log.clone(), serde.clone()],
            };
            show(&graph, &names, false)
        };
        // `std` alone: serde stays off, so `serde?/std` does nothing.
        expect_test::expect![[r#"
            app Target: []
            lib Target: [std]
        "#]]
        .assert_eq(&with(&["std"]));
        // `ser` turns serde on (with its default features, which the edge keeps), and the
        // deferred `serde?/std` applies.
        expect_test::expect![[r#"
            app Target: []
            lib Target: [ser, std]
            serde Target: [default, std]
        "#]]
        .assert_eq(&with(&["std", "ser"]));
        // `log/max` enables the optional dependency and its implicit feature `log`.
        expect_test::expect![[r#"
            app Target: []
            lib Target: [log, logging]
            log Target: [max]
        "#]]
        .assert_eq(&with(&["logging"]));
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resolver_1_gives_every_side_the_unified_features() {
        let graph = split_graph();
        let text = |activation: &Activation| describe(activation, &["app", "lib"]);
        // A plain build: `lib` is built for the code and for the build script, both with what
        // code, build script and tests ask for.
        expect_test::expect![[r#"
            app Target: []
            lib Target: [a, b, c]
            lib Host: [a, b, c]
        "#]]
        .assert_eq(&text(&unify(&graph, false)));
        expect_test::expect![[r#"
            app Target: []
            lib Target: [a, b, c]
            lib Host: [a, b, c]
        "#]]
        .assert_eq(&text(&unify(&graph, true)));
    }

    #[test]
    fn resolver_1_builds_optional_dependencies_on_every_side() {
        // app -> lib (feature `fast`, asked only by the build script) -> optional `simd`.
        let simd = Package::default();
        let lib = Package {
            features: features(&[("fast", &["dep:simd"])]),
            deps: vec![edge(2, "simd", DepKind::Normal, true, &[])],
            ..Package::default()
        };
        let app = Package {
            member: true,
            deps: vec![
                edge(1, "lib", DepKind::Normal, false, &[]),
                edge(1, "lib", DepKind::Build, false, &["fast"]),
            ],
            ..Package::default()
        };
        let graph = Graph {
            packages: vec![app, lib, simd],
        };
        let resolver_2 = resolve(&graph, false);
        assert!(!resolver_2.features.contains_key(&(2, For::Target)));
        let resolver_1 = unify(&graph, false);
        assert!(resolver_1.features.contains_key(&(2, For::Target)));
        assert!(resolver_1.features.contains_key(&(2, For::Host)));
        assert_eq!(resolver_1.features[&(1, For::Target)], set(&["fast"]));
    }

    #[test]
    fn build_script_dependencies_of_registry_crates_are_host() {
        // app -> a -> (build) cc[parallel]; app -> cc (no features).
        let cc = Package {
            features: features(&[("parallel", &[])]),
            ..Package::default()
        };
        let a = Package {
            deps: vec![edge(2, "cc", DepKind::Build, false, &["parallel"])],
            ..Package::default()
        };
        let app = Package {
            member: true,
            deps: vec![
                edge(1, "a", DepKind::Normal, false, &[]),
                edge(2, "cc", DepKind::Normal, false, &[]),
            ],
            ..Package::default()
        };
        let graph = Graph {
            packages: vec![app, a, cc],
        };
        let activation = resolve(&graph, false);
        assert_eq!(
            activation.features[&(2, For::Host)],
            BTreeSet::from(["parallel".to_string()])
        );
        assert!(activation.features[&(2, For::Target)].is_empty());
        let edges = activation.edges(&graph, 1, For::Target, false);
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].1, For::Host);
    }
}
