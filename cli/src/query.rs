//! `kiln query EXPR --output label|label_kind|build|graph`: the query core of
//! `kiln_graph::query` over the engine's memoized package loader.
//!
//! A malformed expression exits with code 2; a package that does not load or a missing target
//! with code 1. An empty result prints `INFO: Empty results` on stderr and succeeds, as in Bazel.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use kiln_graph::analysis::RuleImpl;
use kiln_graph::engine::Engine;
use kiln_graph::load::{discover_packages, Package};
use kiln_graph::query::output::{render, OutputFormat};
use kiln_graph::query::{self, QueryEnv, QueryError};
use kiln_graph::target::Target;

use crate::args::{BuildFlags, QueryArgs, QueryOutput, SpawnStrategy};
use crate::exit::{self, Exit};
use crate::state::State;
use crate::ui::Terminal;
use crate::workspace::Workspace;

/// Runs a query and prints its result on stdout.
pub fn run(args: &QueryArgs) -> Result<i32> {
    let workspace = Workspace::open(&args.common)?;
    let terminal = Terminal::new();
    let state = State::open(&workspace.state_dir, &terminal)?;
    // Nothing runs, so no namespace probe: a plain sandbox satisfies the configuration.
    let flags = BuildFlags {
        spawn_strategy: Some(SpawnStrategy::Local),
        common: args.common.clone(),
        ..BuildFlags::default()
    };
    let config = crate::commands::engine_config(&workspace, &flags)?;
    let rules = kiln_rules::all_rules();
    let engine = Engine::new(config, &rules, &state, &terminal);
    let mut env = EngineEnv {
        engine: &engine,
        rules: &rules,
        packages: HashMap::new(),
    };
    let result =
        query::run(&args.expression, &workspace.cwd_package, &mut env).map_err(|e| match e {
            QueryError::Syntax { .. } => Exit::new(exit::BAD_COMMAND_LINE, e.to_string()),
            QueryError::Evaluation(message) => Exit::new(exit::BUILD_FAILED, message),
        })?;
    if result.nodes.is_empty() {
        terminal.line("INFO: Empty results");
    }
    let format = match args.output {
        QueryOutput::Label => OutputFormat::Label,
        QueryOutput::LabelKind => OutputFormat::LabelKind,
        QueryOutput::Build => OutputFormat::Build,
        QueryOutput::Graph => OutputFormat::Graph,
    };
    let text = render(&result, format, &workspace.root.to_string_lossy());
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("Cannot write the query result")?;
    Ok(exit::SUCCESS)
}

/// [`QueryEnv`] over the engine: packages from its memoized loader, kept for the whole query.
struct EngineEnv<'a> {
    engine: &'a Engine<'a>,
    rules: &'a [Box<dyn RuleImpl>],
    packages: HashMap<String, Result<Arc<Package>, String>>,
}

impl QueryEnv for EngineEnv<'_> {
    fn packages(&mut self) -> Result<Vec<String>, String> {
        Ok(discover_packages(self.engine.root()))
    }

    fn package(&mut self, name: &str) -> Result<Arc<Package>, String> {
        let engine = self.engine;
        self.packages
            .entry(name.to_string())
            .or_insert_with(|| engine.load_package(name))
            .clone()
    }

    fn declared_outputs(&self, target: &Target) -> Vec<String> {
        self.rules
            .iter()
            .find(|r| r.schema().name == target.kind)
            .map(|r| r.declared_outputs(target))
            .unwrap_or_default()
    }

    fn file_exists(&self, path: &str) -> bool {
        self.engine.root().join(path).is_file()
    }
}
