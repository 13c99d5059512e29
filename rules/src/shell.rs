//! `sh_binary`, `sh_test` and `sh_library`: the script is copied to the package's output directory
//! under the target's name (executable), with `data` and dependencies as runfiles.

use kiln_graph::action::ActionSpec;
use kiln_graph::analysis::{
    AnalysisContext, AnalysisError, DefaultInfo, Providers, RuleImpl, TestInfo,
};
use kiln_graph::rule_schema::{AttrKind, AttrSchema, RuleSchema};

use crate::{runfiles, ACTION_PATH};

/// One of the three shell rules.
pub struct ShRule {
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Binary,
    Test,
    Library,
}

impl ShRule {
    /// `sh_binary`.
    pub fn binary() -> Self {
        ShRule { kind: Kind::Binary }
    }

    /// `sh_test`.
    pub fn test() -> Self {
        ShRule { kind: Kind::Test }
    }

    /// `sh_library`.
    pub fn library() -> Self {
        ShRule {
            kind: Kind::Library,
        }
    }
}

const ATTRS: &[AttrSchema] = &[
    AttrSchema::optional("srcs", AttrKind::LabelList),
    AttrSchema::optional("data", AttrKind::LabelList),
    AttrSchema::optional("deps", AttrKind::LabelList),
    AttrSchema::optional("args", AttrKind::StringList),
    AttrSchema::optional("env", AttrKind::StringDict),
    AttrSchema::optional("env_inherit", AttrKind::StringList),
];

impl RuleImpl for ShRule {
    fn schema(&self) -> RuleSchema {
        let name = match self.kind {
            Kind::Binary => "sh_binary",
            Kind::Test => "sh_test",
            Kind::Library => "sh_library",
        };
        RuleSchema {
            name,
            attrs: ATTRS,
            test: self.kind == Kind::Test,
            executable: self.kind != Kind::Library,
        }
    }

    fn analyze(&self, ctx: &mut AnalysisContext<'_>) -> Result<Providers, AnalysisError> {
        let srcs = ctx.files("srcs")?;
        if self.kind == Kind::Library {
            let runfiles = runfiles::collect(ctx, &srcs, &["data", "deps"])?;
            return Ok(Providers::new(DefaultInfo {
                files: srcs,
                executable: None,
                runfiles,
            }));
        }
        let [script] = srcs.as_slice() else {
            return Err(ctx.error(format!(
                "`{}` needs exactly one file in `srcs`, found {}",
                self.schema().name,
                srcs.len()
            )));
        };
        let executable = ctx.declare_output(&ctx.target.label.name);
        let mut action = ActionSpec::new(
            ctx.target.label.clone(),
            "CopyFile",
            vec![
                "/bin/cp".to_string(),
                script.path.clone(),
                executable.path.clone(),
            ],
        );
        action.progress_message = format!("Copying {} for {}", script.path, ctx.target.label);
        action
            .env
            .insert("PATH".to_string(), ACTION_PATH.to_string());
        action.host_tools = vec!["/bin/cp".to_string()];
        action.input(script);
        action.output(&executable, true);
        ctx.register(action);
        let runfiles = runfiles::collect(ctx, std::slice::from_ref(script), &["data", "deps"])?;
        let test = (self.kind == Kind::Test).then(|| TestInfo {
            env: ctx.target.string_dict("env"),
            args: ctx.target.strings("args"),
            filter_env: Some(|filter| {
                vec![("TESTBRIDGE_TEST_ONLY".to_string(), filter.to_string())]
            }),
            filter_args: None,
            cannot_run: None,
            working_dir: None,
        });
        let mut providers = Providers::new(DefaultInfo {
            files: vec![executable.clone()],
            executable: Some(executable),
            runfiles,
        });
        providers.test = test;
        Ok(providers)
    }
}
