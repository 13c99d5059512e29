//! The standard library, compiled per package on demand: only the packages a build imports (and
//! what they import) get a compile action, keyed by the SDK identity, GOOS/GOARCH and flags, so
//! every workspace on the machine shares them through the cache. Sources are read in place from
//! the mounted SDK; outputs live under `kiln-out/go/std/<goos>_<goarch>/`.
//!
//! Which files make each package (and what they import) depends only on the SDK and the
//! configuration, so it is worked out once for the whole standard library ([`StdLib::index`])
//! and remembered in the workspace's persistent memo under the SDK's identity: later builds
//! read no standard-library file headers at all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiln_graph::action::{ActionSpec, Artifact};
use kiln_graph::label::Label;

use super::action::go_action;
use super::compile::{self, CompileRequest};
use super::constraints::BuildContext;
use super::package;
use super::toolchain::{SandboxSdk, Sdk, SDK_MOUNT};

/// What the standard library's index remembers of one package: what [`StdPackage`] holds
/// beyond its path and artifacts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexEntry {
    /// Imports: (as written, resolved package path).
    pub imports: Vec<(String, String)>,
    /// `.go` files under the SDK mount.
    pub go_files: Vec<String>,
    /// `.s` files under the SDK mount.
    pub s_files: Vec<String>,
}

/// One standard-library package.
#[derive(Clone, Debug)]
pub struct StdPackage {
    /// Package path (`fmt`, `vendor/golang.org/x/net/idna`).
    pub path: String,
    /// Imports: (as written, resolved package path); `unsafe` left out.
    pub imports: Vec<(String, String)>,
    /// `.go` files under the SDK mount.
    pub go_files: Vec<String>,
    /// `.s` files under the SDK mount.
    pub s_files: Vec<String>,
    /// Export data.
    pub export: Artifact,
    /// Link object.
    pub link: Artifact,
}

#[derive(Default)]
struct State {
    packages: HashMap<String, Arc<StdPackage>>,
    registered: HashSet<String>,
}

/// The standard library of one SDK and configuration, shared by every target of a build.
pub struct StdLib {
    sdk: Arc<Sdk>,
    sandbox: SandboxSdk,
    ctx: BuildContext,
    /// `kiln-out/go/std/<dir>/`: `<goos>_<goarch>`, plus `+tag...` for a `gotags` variant.
    dir: String,
    state: Mutex<State>,
    /// Packages already worked out for this SDK and configuration (see the module doc).
    index: BTreeMap<String, IndexEntry>,
}

impl StdLib {
    /// The standard library of `sdk` for the platform of `sandbox` and `ctx`, compiled into
    /// `kiln-out/go/std/<dir>/`.
    pub fn new(sdk: Arc<Sdk>, sandbox: SandboxSdk, ctx: BuildContext, dir: String) -> Self {
        StdLib {
            sdk,
            sandbox,
            ctx,
            dir,
            state: Mutex::new(State::default()),
            index: BTreeMap::new(),
        }
    }

    /// The same standard library, answering [`StdLib::package`] from `index` where it can.
    pub fn with_index(mut self, index: BTreeMap<String, IndexEntry>) -> Self {
        self.index = index;
        self
    }

    /// Every package of the SDK's `src/` (commands, `testdata` and `_`/`.` directories left out)
    /// that has files for this configuration, worked out from the files themselves. A package
    /// that cannot be built here (no files, cgo only) is left out: asking for it still fails.
    pub fn index(&self) -> BTreeMap<String, IndexEntry> {
        let src = self.sdk.host_root.join("src");
        let mut index = BTreeMap::new();
        let walk = walkdir::WalkDir::new(&src)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let name = e.file_name().to_string_lossy();
                let commands = e.depth() == 1 && name == "cmd";
                !(e.file_type().is_dir()
                    && (commands
                        || name == "testdata"
                        || name.starts_with('_')
                        || name.starts_with('.')))
            });
        for entry in walk.flatten() {
            if !entry.file_type().is_dir() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&src) else {
                continue;
            };
            let path = rel.to_string_lossy().to_string();
            if let Ok(pkg) = self.package(&path) {
                index.insert(
                    path,
                    IndexEntry {
                        imports: pkg.imports.clone(),
                        go_files: pkg.go_files.clone(),
                        s_files: pkg.s_files.clone(),
                    },
                );
            }
        }
        index
    }

    fn src_dir(&self, path: &str) -> PathBuf {
        self.sdk.host_root.join("src").join(path)
    }

    /// Whether an import path (from a non-standard package) names a standard-library package.
    pub fn is_std(&self, importpath: &str) -> bool {
        let first = importpath.split('/').next().unwrap_or("");
        !first.contains('.') && (importpath == "unsafe" || self.src_dir(importpath).is_dir())
    }

    fn resolve_import(&self, written: &str) -> String {
        let first = written.split('/').next().unwrap_or("");
        if first.contains('.') {
            let vendored = format!("vendor/{written}");
            if self.src_dir(&vendored).is_dir() {
                return vendored;
            }
        }
        written.to_string()
    }

    /// Reads one package from the SDK (memoized).
    pub fn package(&self, path: &str) -> Result<Arc<StdPackage>, String> {
        if let Some(p) = self.lock().packages.get(path) {
            return Ok(Arc::clone(p));
        }
        if let Some(known) = self.index.get(path) {
            let pkg = Arc::new(self.std_package(path, known.clone()));
            self.lock()
                .packages
                .insert(path.to_string(), Arc::clone(&pkg));
            return Ok(pkg);
        }
        let dir = self.src_dir(path);
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            format!("Standard-library package `{path}` not found in the Go SDK ({e})")
        })?;
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false)
                && !name.ends_with("_test.go")
            {
                files.push((format!("{SDK_MOUNT}/src/{path}/{name}"), entry.path()));
            }
        }
        let selected = package::select(&files, &self.ctx)?;
        if selected.go.is_empty() {
            return Err(if selected.cgo_excluded.is_empty() {
                format!(
                    "Standard-library package `{path}` has no Go files for {}/{}",
                    self.ctx.goos, self.ctx.goarch
                )
            } else {
                format!("Standard-library package `{path}` needs cgo, and Kiln builds with CGO_ENABLED=0")
            });
        }
        let imports = selected
            .imports(&selected.go)
            .into_iter()
            .filter(|i| i != "unsafe")
            .map(|i| {
                let resolved = self.resolve_import(&i);
                (i, resolved)
            })
            .collect();
        let pkg = Arc::new(self.std_package(
            path,
            IndexEntry {
                imports,
                go_files: selected.go.iter().map(|f| f.path.clone()).collect(),
                s_files: selected.asm.clone(),
            },
        ));
        self.lock()
            .packages
            .insert(path.to_string(), Arc::clone(&pkg));
        Ok(pkg)
    }

    /// The package `path` made of `entry`'s files, with its outputs under `kiln-out/go/std/`.
    fn std_package(&self, path: &str, entry: IndexEntry) -> StdPackage {
        let base = format!("kiln-out/go/std/{}/{path}", self.dir);
        StdPackage {
            path: path.to_string(),
            imports: entry.imports,
            go_files: entry.go_files,
            s_files: entry.s_files,
            export: Artifact::derived(format!("{base}.x")),
            link: Artifact::derived(format!("{base}.a")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `roots` and everything they import, dependencies first.
    pub fn closure(&self, roots: &[String]) -> Result<Vec<Arc<StdPackage>>, String> {
        self.closure_beyond(roots, HashSet::new())
    }

    /// `roots` and everything they import, dependencies first, leaving out `known` packages and
    /// what only they lead to.
    fn closure_beyond(
        &self,
        roots: &[String],
        known: HashSet<String>,
    ) -> Result<Vec<Arc<StdPackage>>, String> {
        let mut order = Vec::new();
        let mut seen = known;
        let mut stack: Vec<(String, bool)> = roots
            .iter()
            .filter(|r| *r != "unsafe")
            .map(|r| (r.clone(), false))
            .collect();
        while let Some((path, expanded)) = stack.pop() {
            if expanded {
                order.push(self.package(&path)?);
                continue;
            }
            if !seen.insert(path.clone()) {
                continue;
            }
            let pkg = self.package(&path)?;
            stack.push((path, true));
            for (_, dep) in &pkg.imports {
                if !seen.contains(dep) {
                    stack.push((dep.clone(), false));
                }
            }
        }
        Ok(order)
    }

    /// Compile actions for `roots` and their closure that no earlier target of this build
    /// registered.
    ///
    /// A registered package's closure was registered with it (a whole closure is computed before
    /// any of it is registered), so the walk stops at registered packages: after the first few
    /// targets most calls register nothing and cost a set lookup per root.
    pub fn actions(&self, roots: &[String], owner: &Label) -> Result<Vec<ActionSpec>, String> {
        let registered = {
            let state = self.lock();
            if roots
                .iter()
                .all(|r| r == "unsafe" || state.registered.contains(r))
            {
                return Ok(Vec::new());
            }
            state.registered.clone()
        };
        let mut out = Vec::new();
        for pkg in self.closure_beyond(roots, registered)? {
            if !self.lock().registered.insert(pkg.path.clone()) {
                continue;
            }
            let mut inputs = Vec::new();
            let mut imports = Vec::new();
            let mut importmaps = Vec::new();
            for (written, resolved) in &pkg.imports {
                let dep = self.package(resolved)?;
                inputs.push(dep.export.clone());
                if written != resolved {
                    importmaps.push((written.clone(), resolved.clone()));
                }
                imports.push((resolved.clone(), dep.export.path.clone()));
            }
            imports.sort();
            imports.dedup();
            let req = CompileRequest {
                package_path: pkg.path.clone(),
                go_files: pkg.go_files.clone(),
                s_files: pkg.s_files.clone(),
                src_dir: format!("{SDK_MOUNT}/src/{}", pkg.path),
                imports,
                importmaps,
                embedcfg: None,
                lang: format!("go1.{}", self.sdk.minor()),
                std: true,
                gc_flags: Vec::new(),
                out_export: pkg.export.path.clone(),
                out_link: pkg.link.path.clone(),
            };
            out.push(go_action(
                &self.sdk,
                &self.sandbox,
                owner,
                "GoStdlib",
                format!("Compiling standard-library package {}", pkg.path),
                compile::script(&req, &self.sandbox),
                &inputs,
                &[(&pkg.export, false), (&pkg.link, false)],
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_of_fmt_in_the_installed_sdk() {
        // The installed SDK, found as Kiln finds it (tests need Go installed).
        let go = super::super::modules_fetch::local_go().expect("the tests need `go` on PATH");
        let env = [
            ("GOTOOLCHAIN", "local".to_string()),
            ("HOME", std::env::var("HOME").unwrap_or_default()),
        ];
        let output = kiln_exec::host_command::run(
            &[go.as_os_str(), "env".as_ref(), "GOROOT".as_ref()],
            &env,
            std::path::Path::new("/"),
        )
        .expect("run go env GOROOT");
        let goroot = String::from_utf8(output.stdout).expect("GOROOT is UTF-8");
        let root = std::path::Path::new(goroot.trim());
        assert!(
            root.join("VERSION").is_file(),
            "no SDK at {}",
            root.display()
        );
        let sdk = Arc::new(Sdk::at(root, "test", "linux", "amd64").unwrap());
        let ctx = BuildContext {
            goos: "linux".into(),
            goarch: "amd64".into(),
            go_minor: sdk.minor(),
            cgo: false,
            tags: vec![],
            sys: Default::default(),
        };
        let std = StdLib::new(
            Arc::clone(&sdk),
            sdk.sandbox.clone(),
            ctx,
            "linux_amd64".into(),
        );
        let order = std.closure(&["fmt".into()]).unwrap();
        let names: Vec<&str> = order.iter().map(|p| p.path.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("runtime") < pos("fmt"));
        assert!(pos("internal/abi") < pos("runtime"));
        assert!(!std.package("runtime").unwrap().s_files.is_empty());
        assert!(std.is_std("net/http") && !std.is_std("example.com/x"));
        let net = std.closure(&["net/http".into()]).unwrap();
        assert!(net
            .iter()
            .any(|p| p.path.starts_with("vendor/golang.org/x/")));
        let owner = Label::parse("//a:b", "").unwrap();
        let first = std.actions(&["fmt".into()], &owner).unwrap();
        assert_eq!(first.len(), order.len());
        assert!(std.actions(&["fmt".into()], &owner).unwrap().is_empty());
        // A later target gets exactly the packages beyond what earlier ones registered.
        let fmt_closure: HashSet<&str> = names.iter().copied().collect();
        let beyond: HashSet<String> = net
            .iter()
            .map(|p| p.path.clone())
            .filter(|p| !fmt_closure.contains(p.as_str()))
            .collect();
        let second = std
            .actions(&["net/http".into(), "fmt".into()], &owner)
            .unwrap();
        let described: HashSet<String> = second
            .iter()
            .map(|a| {
                a.progress_message
                    .trim_start_matches("Compiling standard-library package ")
                    .to_string()
            })
            .collect();
        assert_eq!(second.len(), beyond.len());
        assert_eq!(described, beyond);

        // The index answers as the files do, and a library made from it reads none of them.
        let index = std.index();
        assert!(index.contains_key("fmt") && index.contains_key("runtime"));
        let odd: Vec<&String> = index
            .keys()
            .filter(|p| p.starts_with("cmd/") || p.split('/').any(|part| part == "testdata"))
            .collect();
        assert!(odd.is_empty(), "{odd:?}");
        assert!(
            !index.contains_key("syscall/js"),
            "js/wasm only: not a linux package"
        );
        let moved = tempfile::tempdir().expect("temp dir");
        let blind = Arc::new(Sdk {
            host_root: moved.path().to_path_buf(),
            ..(*sdk).clone()
        });
        let from_index = StdLib::new(
            blind,
            sdk.sandbox.clone(),
            std.ctx.clone(),
            "linux_amd64".into(),
        )
        .with_index(index);
        for path in ["fmt", "runtime", "net/http"] {
            let (a, b) = (
                std.package(path).expect("from the files"),
                from_index.package(path).expect("from the index"),
            );
            assert_eq!(
                (&a.imports, &a.go_files, &a.s_files, &a.export),
                (&b.imports, &b.go_files, &b.s_files, &b.export),
                "{path}"
            );
        }
        assert!(from_index.package("syscall/js").is_err());
    }
}
