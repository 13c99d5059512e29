//! `genrule`: runs a bash command, as Bazel does (`/bin/bash -c` with `set -euo pipefail`), after
//! expanding Make variables, with `srcs` and `tools` (and the tools' runfiles) as inputs.

use std::collections::BTreeMap;

use kiln_graph::action::{ActionSpec, Artifact, BIN_DIR};
use kiln_graph::analysis::{AnalysisContext, AnalysisError, DefaultInfo, Providers, RuleImpl};
use kiln_graph::label::Label;
use kiln_graph::rule_schema::{AttrKind, AttrSchema, RuleSchema};
use kiln_graph::target::Target;

use crate::make_vars::{expand, Expansion};
use crate::{ACTION_PATH, SHELL_TOOLS};

/// The `genrule` rule.
pub struct Genrule;

const ATTRS: &[AttrSchema] = &[
    AttrSchema::optional("srcs", AttrKind::LabelList),
    AttrSchema::mandatory("outs", AttrKind::StringList),
    AttrSchema::optional("cmd", AttrKind::String),
    AttrSchema::optional("cmd_bash", AttrKind::String),
    AttrSchema::optional("tools", AttrKind::LabelList),
    AttrSchema::optional("exec_tools", AttrKind::LabelList),
    AttrSchema::optional("toolchains", AttrKind::LabelList),
    AttrSchema::optional("message", AttrKind::String),
    AttrSchema::optional("output_to_bindir", AttrKind::Bool),
    AttrSchema::optional("local", AttrKind::Bool),
    AttrSchema::optional("executable", AttrKind::Bool),
    AttrSchema::optional("stamp", AttrKind::Int),
    AttrSchema::optional("output_licenses", AttrKind::StringList),
];

impl RuleImpl for Genrule {
    fn schema(&self) -> RuleSchema {
        RuleSchema {
            name: "genrule",
            attrs: ATTRS,
            test: false,
            executable: false,
        }
    }

    fn declared_outputs(&self, target: &Target) -> Vec<String> {
        target.strings("outs")
    }

    fn analyze(&self, ctx: &mut AnalysisContext<'_>) -> Result<Providers, AnalysisError> {
        let target = ctx.target;
        let package = target.label.package.clone();
        let outs_names = target.strings("outs");
        if outs_names.is_empty() {
            return Err(ctx.error("`genrule` needs at least one file in `outs`"));
        }
        let mut outs = Vec::new();
        for name in &outs_names {
            if name.is_empty()
                || name.starts_with('/')
                || name.split('/').any(|c| c == ".." || c == ".")
            {
                return Err(ctx.error(format!(
                    "Output `{name}` must be a relative path inside the package"
                )));
            }
            outs.push(ctx.declare_output(name));
        }
        let command = target
            .string("cmd_bash")
            .filter(|c| !c.is_empty())
            .or_else(|| target.string("cmd"))
            .ok_or_else(|| ctx.error("`genrule` needs `cmd` (or `cmd_bash`)"))?
            .to_string();

        // Labels the command may name, with their files.
        let mut known: Vec<(Label, Vec<Artifact>)> = Vec::new();
        let mut srcs = Vec::new();
        for label in target.labels("srcs") {
            let files = ctx.dep(&label)?.default.files.clone();
            srcs.extend(files.iter().cloned());
            known.push((label, files));
        }
        let mut tool_inputs: Vec<(String, Artifact)> = Vec::new();
        for attr in ["tools", "exec_tools"] {
            for label in target.labels(attr) {
                let dep = ctx.dep(&label)?;
                let mut files = dep.default.files.clone();
                if let Some(exe) = &dep.default.executable {
                    if !files.contains(exe) {
                        files.insert(0, exe.clone());
                    }
                    for (path, artifact) in &dep.default.runfiles {
                        let tree = format!(
                            "{}.runfiles/{}/{}",
                            exe.path, ctx.settings.workspace_name, path
                        );
                        tool_inputs.push((tree, artifact.clone()));
                    }
                }
                for file in &files {
                    tool_inputs.push((file.path.clone(), file.clone()));
                }
                known.push((label, files));
            }
        }
        for (name, artifact) in outs_names.iter().zip(&outs) {
            let label = Label {
                repo: target.label.repo.clone(),
                package: package.clone(),
                name: name.clone(),
            };
            known.push((label, vec![artifact.clone()]));
        }

        let rule_dir = ctx.package_out_dir();
        let at_d = if outs.len() == 1 {
            parent(&outs[0].path).to_string()
        } else {
            rule_dir.clone()
        };
        let vars: BTreeMap<String, String> = [
            ("SRCS", join(&srcs)),
            ("OUTS", join(&outs)),
            ("@D", at_d),
            ("RULEDIR", rule_dir),
            ("BINDIR", BIN_DIR.to_string()),
            ("GENDIR", BIN_DIR.to_string()),
            (
                "TARGET_CPU",
                if ctx.settings.host_cpu == "x86_64" {
                    "k8".to_string()
                } else {
                    ctx.settings.host_cpu.clone()
                },
            ),
            ("COMPILATION_MODE", ctx.settings.compilation_mode.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let locate = |text: &str| -> Result<Vec<String>, String> {
            let label = Label::parse(text, &package).map_err(|e| e.to_string())?;
            known
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, files)| files.iter().map(|f| f.path.clone()).collect())
                .ok_or_else(|| format!("Label `{text}` in `$(location)` is not declared in `srcs`, `outs` or `tools`"))
        };
        let root_path = |path: &str| Artifact::derived(path).short_path().to_string();
        let single_src = (srcs.len() == 1).then(|| srcs[0].path.as_str());
        let single_out = (outs.len() == 1).then(|| outs[0].path.as_str());
        let expansion = Expansion {
            vars: &vars,
            single_src,
            single_out,
            locate: &locate,
            root_path: &root_path,
        };
        let expanded =
            expand(&command, &expansion).map_err(|e| ctx.error(format!("In `cmd`: {e}")))?;

        let mut action = ActionSpec::new(
            target.label.clone(),
            "Genrule",
            vec![
                "/bin/bash".to_string(),
                "-c".to_string(),
                format!("set -euo pipefail\n{expanded}"),
            ],
        );
        action.progress_message = match target.string("message") {
            Some(m) if !m.is_empty() => format!("{m} {}", target.label),
            _ => format!("Executing genrule {}", target.label),
        };
        action
            .env
            .insert("PATH".to_string(), ACTION_PATH.to_string());
        action.host_tools = SHELL_TOOLS.iter().map(|s| s.to_string()).collect();
        for src in &srcs {
            action.input(src);
        }
        for (path, artifact) in &tool_inputs {
            action.inputs.push(kiln_graph::action::ActionInput {
                exec_path: path.clone(),
                artifact: artifact.clone(),
            });
        }
        let executable = target.bool("executable");
        for out in &outs {
            action.output(out, executable);
        }
        ctx.register(action);
        let exe = if executable && outs.len() == 1 {
            Some(outs[0].clone())
        } else {
            None
        };
        Ok(Providers::new(DefaultInfo {
            files: outs,
            executable: exe,
            runfiles: Vec::new(),
        }))
    }
}

fn join(files: &[Artifact]) -> String {
    files
        .iter()
        .map(|f| f.path.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
}
