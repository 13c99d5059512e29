//! From the resolver's answers ([`features`]) to the builds of each registry crate: one build per
//! distinct (features, dependency builds) a crate is needed with, across the four roles a crate can
//! play — normal code, host code (build scripts and proc-macros), and the same two in a test build
//! (dev-dependencies on). Equal builds are one build, so a crate whose host and target feature sets
//! agree (and whose dependencies agree) is compiled once. Pure: no I/O.
//!
//! Naming, used by the generated BUILD files: the build for the first role the crate has, in the
//! order normal, host, test, test-host, keeps the crate's own target name (`serde`, so
//! crate_universe's labels hold); every other distinct build gets that role's suffix (`serde_host`,
//! `serde_test`, `serde_test_host`), and its build script the same suffix (`serde_bs_host`).
//!
//! [`features`]: super::features

use std::collections::{BTreeMap, BTreeSet};

use super::features::{Activation, DepKind, For, Graph};

/// A role a crate is built in: (test build?, side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role {
    /// Whether the members' dev-dependencies are on (a test build).
    pub test: bool,
    /// Host or target.
    pub side: For,
}

/// The roles in naming order.
pub const ROLES: [Role; 4] = [
    Role {
        test: false,
        side: For::Target,
    },
    Role {
        test: false,
        side: For::Host,
    },
    Role {
        test: true,
        side: For::Target,
    },
    Role {
        test: true,
        side: For::Host,
    },
];

impl Role {
    /// The target-name suffix of a build first needed in this role (unless it is the crate's first).
    pub fn suffix(self) -> &'static str {
        match (self.test, self.side) {
            (false, For::Target) => "",
            (false, For::Host) => "_host",
            (true, For::Target) => "_test",
            (true, For::Host) => "_test_host",
        }
    }
}

/// A dependency on one build of a crate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VariantDep {
    /// The package (index into the graph).
    pub package: usize,
    /// Which of its builds.
    pub variant: usize,
    /// The name the dependent's code uses.
    pub name: String,
}

/// One build of a crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Target-name suffix (`""` for the crate's first build).
    pub suffix: &'static str,
    /// Enabled features, sorted.
    pub features: Vec<String>,
    /// Dependencies of the library, each on the build it needs.
    pub deps: Vec<VariantDep>,
    /// Dependencies of the build script.
    pub build_deps: Vec<VariantDep>,
    /// Needed only on the host (cargo's `build-override` profile applies: not optimised).
    pub host_only: bool,
    /// The roles it serves.
    pub roles: Vec<Role>,
}

/// Every build of every package (members have none).
#[derive(Clone, Debug, Default)]
pub struct Variants {
    /// Builds per package, the crate's first-named build first.
    pub of: Vec<Vec<Variant>>,
    /// Which build serves (package, role).
    pub by_role: BTreeMap<(usize, Role), usize>,
}

impl Variants {
    /// The build of `package` its first build hands over to in `role`, when that is another build:
    /// how a member's build script or proc-macro (host) and a member's test reach the right
    /// build through the crate's ordinary label.
    pub fn twin(&self, package: usize, role: Role) -> Option<usize> {
        self.by_role
            .get(&(package, role))
            .copied()
            .filter(|&v| v != 0)
    }
}

/// Computes the builds from a normal and a test activation.
pub fn compute(graph: &Graph, normal: &Activation, test: &Activation) -> Variants {
    let mut interner = Interner {
        graph,
        normal,
        test,
        of: vec![Vec::new(); graph.packages.len()],
        by_role: BTreeMap::new(),
        in_progress: BTreeSet::new(),
    };
    for role in ROLES {
        for package in 0..graph.packages.len() {
            interner.intern(package, role);
        }
    }
    let Interner {
        mut of,
        mut by_role,
        ..
    } = interner;
    // Order each package's builds by the first role they serve, so that index 0 is the build
    // named after the crate; then rewrite every reference to the new order.
    let mut order: Vec<Vec<usize>> = Vec::with_capacity(of.len());
    for variants in &mut of {
        let mut indexed: Vec<(usize, Variant)> = variants.drain(..).enumerate().collect();
        indexed.sort_by_key(|(_, v)| v.roles.iter().min().copied());
        let mut new_index = vec![0; indexed.len()];
        for (new, (old, _)) in indexed.iter().enumerate() {
            new_index[*old] = new;
        }
        order.push(new_index);
        variants.extend(indexed.into_iter().map(|(_, v)| v));
    }
    for variants in &mut of {
        for (position, variant) in variants.iter_mut().enumerate() {
            let first = variant.roles.iter().min().copied();
            variant.suffix = match first {
                Some(role) if position != 0 => role.suffix(),
                _ => "",
            };
            for dep in variant.deps.iter_mut().chain(variant.build_deps.iter_mut()) {
                dep.variant = order[dep.package][dep.variant];
            }
        }
    }
    for ((package, _), variant) in by_role.iter_mut() {
        *variant = order[*package][*variant];
    }
    Variants { of, by_role }
}

struct Interner<'a> {
    graph: &'a Graph,
    normal: &'a Activation,
    test: &'a Activation,
    of: Vec<Vec<Variant>>,
    by_role: BTreeMap<(usize, Role), usize>,
    in_progress: BTreeSet<(usize, Role)>,
}

impl Interner<'_> {
    /// The build of `package` in `role`, made (and deduplicated) on first use; `None` if the
    /// package is a member or not built in that role. Registry crates have no dependency cycles
    /// (only dev-dependencies may close one, and only members have those); an edge that would
    /// close one anyway is left out rather than followed forever.
    fn intern(&mut self, package: usize, role: Role) -> Option<usize> {
        if self.graph.packages[package].member {
            return None;
        }
        if let Some(&done) = self.by_role.get(&(package, role)) {
            return Some(done);
        }
        if !self.in_progress.insert((package, role)) {
            return None;
        }
        let variant = self.make(package, role);
        self.in_progress.remove(&(package, role));
        variant
    }

    fn make(&mut self, package: usize, role: Role) -> Option<usize> {
        let activation = if role.test { self.test } else { self.normal };
        let features: Vec<String> = activation
            .features
            .get(&(package, role.side))?
            .iter()
            .cloned()
            .collect();
        let mut deps = Vec::new();
        let mut build_deps = Vec::new();
        for (edge, side) in activation.edges(self.graph, package, role.side, role.test) {
            let dep_role = Role {
                test: role.test,
                side,
            };
            let Some(variant) = self.intern(edge.to, dep_role) else {
                continue;
            };
            let dep = VariantDep {
                package: edge.to,
                variant,
                name: edge.extern_name.clone(),
            };
            match edge.kind {
                DepKind::Normal => deps.push(dep),
                DepKind::Build => build_deps.push(dep),
                DepKind::Dev => {}
            }
        }
        deps.sort();
        deps.dedup();
        build_deps.sort();
        build_deps.dedup();
        let variants = &mut self.of[package];
        let index = match variants
            .iter()
            .position(|v| v.features == features && v.deps == deps && v.build_deps == build_deps)
        {
            Some(index) => index,
            None => {
                variants.push(Variant {
                    suffix: "",
                    features,
                    deps,
                    build_deps,
                    host_only: true,
                    roles: Vec::new(),
                });
                variants.len() - 1
            }
        };
        let variant = &mut variants[index];
        variant.roles.push(role);
        if role.side == For::Target {
            variant.host_only = false;
        }
        self.by_role.insert((package, role), index);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::super::features::{resolve, Edge, Package};
    use super::*;

    fn edge(to: usize, kind: DepKind, features: &[&str]) -> Edge {
        Edge {
            to,
            name_in_toml: "lib".into(),
            extern_name: "lib".into(),
            kind,
            optional: false,
            default_features: false,
            features: features.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `app` uses `lib` (which uses `leaf`) with the given features from its code, its build
    /// script and its tests.
    fn graph(normal: &[&str], build: &[&str], dev: &[&str]) -> Graph {
        let names = ["a", "b", "c"];
        let lib = Package {
            features: names.iter().map(|n| (n.to_string(), Vec::new())).collect(),
            deps: vec![Edge {
                name_in_toml: "leaf".into(),
                extern_name: "leaf".into(),
                ..edge(2, DepKind::Normal, &[])
            }],
            ..Package::default()
        };
        let app = Package {
            member: true,
            deps: vec![
                edge(1, DepKind::Normal, normal),
                edge(1, DepKind::Build, build),
                edge(1, DepKind::Dev, dev),
            ],
            ..Package::default()
        };
        Graph {
            packages: vec![app, lib, Package::default()],
        }
    }

    fn show(graph: &Graph) -> String {
        let variants = compute(graph, &resolve(graph, false), &resolve(graph, true));
        let mut text = String::new();
        for (package, builds) in variants.of.iter().enumerate() {
            for build in builds {
                let deps: Vec<String> = build
                    .deps
                    .iter()
                    .map(|d| format!("{}#{}", d.package, d.variant))
                    .collect();
                text.push_str(&format!(
                    "{package}{}: features {:?} deps {deps:?} host_only {} roles {}\n",
                    build.suffix,
                    build.features,
                    build.host_only,
                    build.roles.len()
                ));
            }
        }
        text
    }

    #[test]
    fn different_sets_make_separate_builds_named_by_role() {
        expect_test::expect![[r#"
            1: features ["a"] deps ["2#0"] host_only false roles 1
            1_host: features ["b"] deps ["2#0"] host_only true roles 2
            1_test: features ["a", "c"] deps ["2#0"] host_only false roles 1
            2: features [] deps [] host_only false roles 4
        "#]]
        .assert_eq(&show(&graph(&["a"], &["b"], &["c"])));
    }

    #[test]
    fn equal_sets_are_one_build() {
        expect_test::expect![[r#"
            1: features ["a"] deps ["2#0"] host_only false roles 4
            2: features [] deps [] host_only false roles 4
        "#]]
        .assert_eq(&show(&graph(&["a"], &["a"], &["a"])));
        let graph = graph(&["a"], &["a"], &["c"]);
        let variants = compute(&graph, &resolve(&graph, false), &resolve(&graph, true));
        let host = Role {
            test: false,
            side: For::Host,
        };
        let test = Role {
            test: true,
            side: For::Target,
        };
        assert_eq!(variants.twin(1, host), None);
        assert_eq!(variants.twin(1, test), Some(1));
    }

    #[test]
    fn a_dependency_that_differs_splits_its_dependents() {
        // lib's own features agree, but leaf gets `x` only on the host: lib is built twice.
        let mut graph = graph(&["a"], &["a"], &[]);
        graph.packages[2].features.insert("x".into(), Vec::new());
        graph.packages[0].deps.push(Edge {
            name_in_toml: "leaf".into(),
            extern_name: "leaf".into(),
            ..edge(2, DepKind::Build, &["x"])
        });
        expect_test::expect![[r#"
            1: features ["a"] deps ["2#0"] host_only false roles 2
            1_host: features ["a"] deps ["2#1"] host_only true roles 2
            2: features [] deps [] host_only false roles 2
            2_host: features ["x"] deps [] host_only true roles 2
        "#]]
        .assert_eq(&show(&graph));
    }
}
