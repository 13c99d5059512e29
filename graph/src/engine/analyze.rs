//! Analysis driver: resolves each label to a rule target, an output file of a rule, or a source
//! file; checks visibility; analyzes dependencies first; and collects every registered action.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::action::{ActionSpec, Artifact};
use crate::analysis::{
    label_dir, AnalysisContext, AnalysisErrorKind, BuildScoped, BuildSettings, DefaultInfo,
    HostAccess, Providers, RuleImpl, WorkspaceInfo,
};
use crate::engine::packages::PackageLoader;
use crate::label::Label;
use crate::load::{self, Package};
use crate::repository::{ExternalRepos, RepositoryError};
use crate::rule_schema::AttrKind;
use crate::target::{AttrValue, Location, Target};

/// Attributes whose labels are not dependencies.
const NON_DEP_ATTRS: &[&str] = &[
    "visibility",
    "compatible_with",
    "target_compatible_with",
    "exec_compatible_with",
    "restricted_to",
];

/// The analysis of a set of targets.
pub struct Analyzer<'a, 'l> {
    root: &'a Path,
    loader: &'a mut PackageLoader<'l>,
    rules: &'a HashMap<&'static str, &'a dyn RuleImpl>,
    settings: &'a BuildSettings,
    env: AnalysisEnv<'a>,
    providers: HashMap<Label, Arc<Providers>>,
    in_progress: HashSet<Label>,
    /// Every action registered so far.
    pub actions: Vec<ActionSpec>,
    /// Targets analyzed so far (rule targets only), with their kind.
    pub targets: HashMap<Label, Target>,
    /// Source files that labels resolved to (their existence decided the analysis).
    pub checked_sources: Vec<String>,
    /// Whether a failure was a missing or broken toolchain (exit code 36) rather than a BUILD error.
    pub toolchain_failed: bool,
}

/// What every rule sees besides its target: the workspace, the host and per-build values, and the
/// external repositories labels may name.
#[derive(Clone, Copy)]
pub struct AnalysisEnv<'a> {
    /// The workspace.
    pub workspace: &'a WorkspaceInfo,
    /// Observed host files and the persistent memo.
    pub host: &'a dyn HostAccess,
    /// Values shared by every target of the build.
    pub scoped: &'a BuildScoped,
    /// External repositories (resolved on first reference).
    pub repos: &'a ExternalRepos<'a>,
}

impl<'a, 'l> Analyzer<'a, 'l> {
    /// A fresh analysis.
    pub fn new(
        root: &'a Path,
        loader: &'a mut PackageLoader<'l>,
        rules: &'a HashMap<&'static str, &'a dyn RuleImpl>,
        settings: &'a BuildSettings,
        env: AnalysisEnv<'a>,
    ) -> Self {
        Analyzer {
            root,
            loader,
            rules,
            settings,
            env,
            toolchain_failed: false,
            providers: HashMap::new(),
            in_progress: HashSet::new(),
            actions: Vec::new(),
            targets: HashMap::new(),
            checked_sources: Vec::new(),
        }
    }

    /// The package `name` (through the memoizing loader).
    pub fn package(&mut self, name: &str) -> Result<Arc<Package>, String> {
        self.loader.package(name)
    }

    /// Analyzes `label`, referenced from `from` (a location and package, for errors and visibility).
    pub fn analyze(
        &mut self,
        label: &Label,
        from: Option<(&Location, &str)>,
    ) -> Result<Arc<Providers>, String> {
        let at = |message: String| match from {
            Some((location, _)) => format!("{location}: {message}"),
            None => message,
        };
        if !label.is_main_repo() {
            if let Err(e @ RepositoryError::Environment(_)) = self.env.repos.root(&label.repo) {
                self.toolchain_failed = true;
                return Err(at(format!("`{label}`: {e}")));
            }
        }
        let package = self
            .loader
            .package_in(&label.repo, &label.package)
            .map_err(|e| match from {
                Some((location, _)) => format!(
                    "{location}: `{label}` names package `{}`, which failed to load:\n{e}",
                    label.package
                ),
                None => e,
            })?;
        let package_dir = label_dir(label);
        if let Some(target) = package.targets.get(&label.name) {
            if let Some((_, from_package)) = from {
                if !load::is_visible(&target.visibility, &package_dir, from_package) {
                    return Err(at(format!(
                        "Target `{label}` is not visible from package `//{from_package}`; add it to the target's `visibility`"
                    )));
                }
            }
            return self.analyze_rule(target.clone());
        }
        // An output file of a rule in the package?
        let mut generator = None;
        for target in package.targets.values() {
            if let Some(rule) = self.rules.get(target.kind.as_str()) {
                if rule
                    .declared_outputs(target)
                    .iter()
                    .any(|o| o == &label.name)
                {
                    generator = Some(target.clone());
                    break;
                }
            }
        }
        if let Some(generator) = generator {
            if let Some((_, from_package)) = from {
                if !load::is_visible(&generator.visibility, &package_dir, from_package) {
                    return Err(at(format!(
                        "Output `{label}` of `{}` is not visible from package `//{from_package}`",
                        generator.label
                    )));
                }
            }
            self.analyze_rule(generator)?;
            let artifact = Artifact::derived(crate::analysis::output_path(
                &crate::analysis::label_dir(label),
                &label.name,
            ));
            return Ok(Arc::new(Providers::new(DefaultInfo {
                files: vec![artifact],
                executable: None,
                runfiles: Vec::new(),
            })));
        }
        // A source file.
        let path = if package_dir.is_empty() {
            label.name.clone()
        } else {
            format!("{package_dir}/{}", label.name)
        };
        if let Some((visibility, _)) = package.exported_files.get(&label.name) {
            if let Some((_, from_package)) = from {
                if !load::is_visible(visibility, &package_dir, from_package) {
                    return Err(at(format!(
                        "File `{label}` is not visible from package `//{from_package}`"
                    )));
                }
            }
        }
        let host = if label.is_main_repo() {
            self.root.join(&path)
        } else {
            // The package loaded, so its repository resolved.
            let dir = self
                .env
                .repos
                .root(&label.repo)
                .map_err(|e| at(e.to_string()))?;
            dir.join(&label.package).join(&label.name)
        };
        if !host.is_file() {
            return Err(at(format!(
                "No such target `{label}`: no rule named `{}` in `{}`, and no file `{path}`",
                label.name, package.build_file
            )));
        }
        let sub = if label.is_main_repo() {
            self.subpackage_of(&label.package, &label.name)
        } else {
            None
        };
        if let Some(sub) = sub {
            return Err(at(format!(
                "`{label}` crosses into subpackage `//{sub}`; write `//{sub}:...` instead"
            )));
        }
        self.checked_sources.push(path.clone());
        Ok(Arc::new(Providers::new(DefaultInfo {
            files: vec![Artifact::source(path)],
            executable: None,
            runfiles: Vec::new(),
        })))
    }

    fn subpackage_of(&self, package: &str, name: &str) -> Option<String> {
        let mut dir = package.to_string();
        let parts: Vec<&str> = name.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            dir = if dir.is_empty() {
                part.to_string()
            } else {
                format!("{dir}/{part}")
            };
            if load::BUILD_FILE_NAMES
                .iter()
                .any(|b| self.root.join(&dir).join(b).is_file())
            {
                return Some(dir);
            }
        }
        None
    }

    fn analyze_rule(&mut self, target: Target) -> Result<Arc<Providers>, String> {
        if let Some(done) = self.providers.get(&target.label) {
            return Ok(Arc::clone(done));
        }
        if !self.in_progress.insert(target.label.clone()) {
            return Err(format!(
                "{}: Dependency cycle through `{}`",
                target.location, target.label
            ));
        }
        let rule = *self.rules.get(target.kind.as_str()).ok_or_else(|| {
            format!(
                "{}: `{}` is not a rule Kiln provides",
                target.location, target.kind
            )
        })?;
        let schema = rule.schema();
        let mut deps: HashMap<Label, Arc<Providers>> = HashMap::new();
        for (name, value) in &target.attrs {
            if NON_DEP_ATTRS.contains(&name.as_str()) {
                continue;
            }
            let is_label = matches!(
                schema.attr(name).map(|a| a.kind),
                Some(AttrKind::Label | AttrKind::LabelList | AttrKind::LabelKeyedStringDict)
            );
            let labels: Vec<&Label> = match value {
                AttrValue::Label(l) => vec![l],
                AttrValue::LabelList(v) => v.iter().collect(),
                AttrValue::LabelKeyedStringDict(v) => v.iter().map(|(l, _)| l).collect(),
                _ => Vec::new(),
            };
            if !is_label && labels.is_empty() {
                continue;
            }
            for dep in labels {
                if deps.contains_key(dep) {
                    continue;
                }
                let from_dir = label_dir(&target.label);
                let providers = self.analyze(dep, Some((&target.location, &from_dir)))?;
                deps.insert(dep.clone(), providers);
            }
        }
        let mut ctx = AnalysisContext {
            target: &target,
            deps: &deps,
            settings: self.settings,
            actions: Vec::new(),
            workspace: self.env.workspace,
            host: self.env.host,
            scoped: self.env.scoped,
        };
        let providers = rule.analyze(&mut ctx).map_err(|e| {
            if e.kind == AnalysisErrorKind::Toolchain {
                self.toolchain_failed = true;
            }
            e.to_string()
        })?;
        let actions = std::mem::take(&mut ctx.actions);
        self.actions.extend(actions);
        let providers = Arc::new(providers);
        self.in_progress.remove(&target.label);
        self.providers
            .insert(target.label.clone(), Arc::clone(&providers));
        self.targets.insert(target.label.clone(), target);
        Ok(providers)
    }
}
