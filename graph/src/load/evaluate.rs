//! Evaluation of BUILD and `.bzl` files: parsing, resolving `load()`s (workspace files, chained,
//! with cycle detection; well-known external files answered by Kiln), and a per-process cache of
//! evaluated `.bzl` modules that is checked against the current contents of every file they read.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use starlark::environment::{FrozenModule, Globals, Module};
use starlark::eval::{Evaluator, FileLoader};
use starlark::syntax::{AstModule, Dialect};

use super::builtins::{globals, rule_value};
use super::context::{EvalContext, PackageBuild};
use super::diag::{location_of, Diagnostic, DiagnosticKind};
use super::external::{self, External};
use super::fs::join;
use super::{HostPlatform, PackageFs};
use crate::label::Label;
use crate::rule_schema::RuleSchema;
use crate::target::Location;

/// Deepest Starlark call stack allowed (deep recursion is an error, not a crash).
const MAX_CALL_STACK: usize = 200;

/// An evaluated `.bzl` module and every workspace file it read (itself included), with the
/// digest of the contents it saw.
#[derive(Clone)]
struct Evaluated {
    module: FrozenModule,
    files: FileDigests,
}

/// Workspace files with the digest of the contents read.
type FileDigests = Vec<(String, String)>;

/// Evaluated `.bzl` modules by (path, rule set and platform).
type Cache = Mutex<HashMap<(String, String), Evaluated>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn digest(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// The dialect of BUILD and `.bzl` files: standard Starlark plus what Bazel also accepts.
fn dialect() -> Dialect {
    Dialect {
        enable_top_level_stmt: true,
        enable_keyword_only_arguments: true,
        ..Dialect::Standard
    }
}

struct MapLoader(HashMap<String, FrozenModule>);

impl FileLoader for MapLoader {
    fn load(&self, path: &str) -> starlark::Result<FrozenModule> {
        self.0.get(path).cloned().ok_or_else(|| {
            starlark::Error::new_other(super::context::UserError(format!(
                "`{path}` was not loaded"
            )))
        })
    }
}

/// The directory of an external repository (one a repository rule defines), or why there is
/// none: lets a BUILD file `load()` a `.bzl` file such as `@crates//:defs.bzl`.
pub type RepoRoots<'a> = &'a (dyn Fn(&str) -> Result<std::path::PathBuf, String> + Sync);

/// One package load: the inputs, and the files read so far.
pub(crate) struct Session<'a> {
    pub fs: &'a dyn PackageFs,
    pub rules: &'a [RuleSchema],
    pub platform: &'a HostPlatform,
    repo_roots: Option<RepoRoots<'a>>,
    globals: Globals,
    cache_key: String,
    loading: RefCell<Vec<String>>,
}

/// The result of evaluating a BUILD file.
pub(crate) struct BuildResult<'a> {
    pub package: PackageBuild<'a>,
    /// `.bzl` files read, directly or not.
    pub bzl_files: BTreeSet<String>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(
        fs: &'a dyn PackageFs,
        rules: &'a [RuleSchema],
        platform: &'a HostPlatform,
        repo_roots: Option<RepoRoots<'a>>,
    ) -> Self {
        let names: Vec<&str> = rules.iter().map(|r| r.name).collect();
        let cache_key = format!("{} {} {}", platform.os, platform.cpu, names.join(","));
        Session {
            fs,
            rules,
            platform,
            repo_roots,
            globals: globals(rules),
            cache_key,
            loading: RefCell::new(Vec::new()),
        }
    }

    /// Evaluates the BUILD file `build_file` of `package`.
    pub(crate) fn eval_build(
        &self,
        package: PackageBuild<'a>,
        source: String,
    ) -> Result<BuildResult<'a>, Vec<Diagnostic>> {
        let ast = AstModule::parse(&package.build_file, source, &dialect())
            .map_err(|e| vec![Diagnostic::from_starlark(&e)])?;
        let (loader, files) = self.resolve_loads(&ast, &package.name)?;
        let ctx = EvalContext {
            rules: self.rules,
            platform: self.platform,
            package: Some(package),
        };
        let error = Module::with_temp_heap(|module| {
            let mut eval = Evaluator::new(&module);
            eval.set_loader(&loader);
            eval.extra = Some(&ctx);
            if let Err(e) = eval.set_max_callstack_size(MAX_CALL_STACK) {
                return Some(Diagnostic {
                    location: None,
                    message: format!("{e:#}"),
                    kind: DiagnosticKind::Internal,
                });
            }
            eval.eval_module(ast, &self.globals)
                .err()
                .map(|e| Diagnostic::from_starlark(&e))
        });
        let Some(package) = ctx.package else {
            return Err(vec![Diagnostic::user(None, "Package context lost")]);
        };
        let mut diagnostics = std::mem::take(&mut package.state.borrow_mut().diagnostics);
        diagnostics.extend(error);
        if diagnostics.is_empty() {
            let bzl_files = files.into_iter().map(|(path, _)| path).collect();
            Ok(BuildResult { package, bzl_files })
        } else {
            Err(diagnostics)
        }
    }

    /// Evaluates every `load()` of `ast` (a file of `package`): the loader to evaluate it with,
    /// and the workspace files read.
    fn resolve_loads(
        &self,
        ast: &AstModule,
        package: &str,
    ) -> Result<(MapLoader, FileDigests), Vec<Diagnostic>> {
        let mut modules = HashMap::new();
        let mut files = Vec::new();
        let mut diagnostics = Vec::new();
        for load in ast.loads() {
            let location = location_of(&load.span);
            let wanted: Vec<&str> = load.symbols.values().copied().collect();
            match self.load_one(load.module_id, &wanted, package, &location) {
                Ok(evaluated) => {
                    files.extend(evaluated.files);
                    modules.insert(load.module_id.to_string(), evaluated.module);
                }
                Err(mut d) => diagnostics.append(&mut d),
            }
        }
        if diagnostics.is_empty() {
            files.sort();
            files.dedup();
            Ok((MapLoader(modules), files))
        } else {
            Err(diagnostics)
        }
    }

    fn load_one(
        &self,
        module_id: &str,
        wanted: &[&str],
        package: &str,
        location: &Location,
    ) -> Result<Evaluated, Vec<Diagnostic>> {
        let at = |message: String| vec![Diagnostic::user(Some(location.clone()), message)];
        let label = Label::parse(module_id, package).map_err(|e| at(format!("`load()`: {e}")))?;
        if !label.name.ends_with(".bzl") {
            return Err(at(format!(
                "`load()` can only load `.bzl` files, not `{label}`"
            )));
        }
        if label.is_main_repo() {
            let path = join(&label.package, &label.name);
            return self.load_bzl(&path, &label, location);
        }
        let provided = match (external::resolve(&label, self.rules), self.repo_roots) {
            (Err(_), Some(roots)) if !external::is_builtin_repo(&label.repo) => {
                return self.load_repo_bzl(&label, roots, location);
            }
            (provided, _) => provided,
        };
        match provided.map_err(at)? {
            External::Rules(provided) => {
                if let Some(missing) = wanted.iter().find(|w| !provided.iter().any(|p| p == *w)) {
                    let known = if provided.is_empty() {
                        "none in this file".to_string()
                    } else {
                        provided.join(", ")
                    };
                    return Err(at(format!(
                        "`{missing}` is not provided by Kiln (loading `{label}`); known rules: {known}"
                    )));
                }
                let module = Module::with_temp_heap(|module| {
                    for name in &provided {
                        module.set(name, module.heap().alloc(rule_value(name)));
                    }
                    module.freeze()
                })
                .map_err(|e| at(format!("Internal error freezing `{label}`: {e:?}")))?;
                Ok(Evaluated {
                    module,
                    files: Vec::new(),
                })
            }
            External::Embedded(source) => {
                let key = (external::embedded_filename(&label), self.cache_key.clone());
                if let Some(hit) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
                    return Ok(hit);
                }
                let evaluated = self.eval_bzl(&key.0, "", source.to_string(), String::new())?;
                let evaluated = Evaluated {
                    files: Vec::new(),
                    ..evaluated
                };
                if let Ok(mut c) = cache().lock() {
                    c.insert(key, evaluated.clone());
                }
                Ok(evaluated)
            }
        }
    }

    /// Loads a `.bzl` file of an external repository a repository rule defines. Its record in
    /// the files read is the label, with [`repo_file_digest`] (the repository's directory and
    /// the file's bytes), which the package memo checks through the same resolver. Loads inside
    /// it must name their repository.
    fn load_repo_bzl(
        &self,
        label: &Label,
        roots: RepoRoots<'_>,
        location: &Location,
    ) -> Result<Evaluated, Vec<Diagnostic>> {
        let at = |message: String| vec![Diagnostic::user(Some(location.clone()), message)];
        let dir = roots(&label.repo).map_err(|e| at(format!("Cannot load `{label}`: {e}")))?;
        let path = dir.join(&label.package).join(&label.name);
        let source = std::fs::read_to_string(&path).map_err(|e| {
            at(format!(
                "Cannot load `{label}`: reading {} failed: {e}",
                path.display()
            ))
        })?;
        let own_digest = repo_file_digest(&dir, &source);
        let name = label.to_string();
        self.eval_bzl(&name, "", source, own_digest)
    }

    /// Loads the workspace `.bzl` file at `path`, from the cache when nothing it read changed.
    fn load_bzl(
        &self,
        path: &str,
        label: &Label,
        location: &Location,
    ) -> Result<Evaluated, Vec<Diagnostic>> {
        let at = |message: String| vec![Diagnostic::user(Some(location.clone()), message)];
        if self.loading.borrow().iter().any(|p| p == path) {
            let mut cycle = self.loading.borrow().clone();
            cycle.push(path.to_string());
            return Err(at(format!(
                "Cycle in `load()` graph: {}",
                cycle.join(" -> ")
            )));
        }
        let key = (path.to_string(), self.cache_key.clone());
        if let Some(hit) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
            let fresh = hit.files.iter().all(|(file, d)| {
                self.fs
                    .read_file(file)
                    .is_ok_and(|text| digest(&text) == *d)
            });
            if fresh {
                return Ok(hit);
            }
        }
        let source = self.fs.read_file(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                at(format!(
                    "Cannot load `{label}`: file `{path}` does not exist"
                ))
            } else {
                vec![Diagnostic {
                    location: Some(location.clone()),
                    message: format!("Cannot load `{label}`: reading `{path}` failed: {e}"),
                    kind: DiagnosticKind::Environment,
                }]
            }
        })?;
        let own_digest = digest(&source);
        self.loading.borrow_mut().push(path.to_string());
        let result = self.eval_bzl(path, &label.package, source, own_digest);
        self.loading.borrow_mut().pop();
        let evaluated = result?;
        if let Ok(mut c) = cache().lock() {
            c.insert(key, evaluated.clone());
        }
        Ok(evaluated)
    }

    /// Evaluates a `.bzl` file named `filename` in `package` and freezes it.
    fn eval_bzl(
        &self,
        filename: &str,
        package: &str,
        source: String,
        own_digest: String,
    ) -> Result<Evaluated, Vec<Diagnostic>> {
        let ast = AstModule::parse(filename, source, &dialect())
            .map_err(|e| vec![Diagnostic::from_starlark(&e)])?;
        let (loader, mut files) = self.resolve_loads(&ast, package)?;
        let ctx = EvalContext {
            rules: self.rules,
            platform: self.platform,
            package: None,
        };
        let module = Module::with_temp_heap(|module| {
            {
                let mut eval = Evaluator::new(&module);
                eval.set_loader(&loader);
                eval.extra = Some(&ctx);
                eval.set_max_callstack_size(MAX_CALL_STACK).map_err(|e| {
                    vec![Diagnostic {
                        location: None,
                        message: format!("{e:#}"),
                        kind: DiagnosticKind::Internal,
                    }]
                })?;
                eval.eval_module(ast, &self.globals)
                    .map_err(|e| vec![Diagnostic::from_starlark(&e)])?;
            }
            module.freeze().map_err(|e| {
                vec![Diagnostic {
                    location: None,
                    message: format!("Cannot freeze `{filename}`: {e:?}"),
                    kind: DiagnosticKind::Internal,
                }]
            })
        })?;
        files.push((filename.to_string(), own_digest));
        files.sort();
        files.dedup();
        Ok(Evaluated { module, files })
    }
}

/// What a package records for a `.bzl` file of an external repository: the digest of the
/// repository's directory (content-addressed: a new definition is a new directory) and the
/// file's text.
pub fn repo_file_digest(dir: &std::path::Path, text: &str) -> String {
    digest(&format!("{}\0{text}", dir.display()))
}
