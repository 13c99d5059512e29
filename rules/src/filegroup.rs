//! `filegroup` (a named set of files) and `alias` (another name for a target).

use kiln_graph::analysis::{AnalysisContext, AnalysisError, DefaultInfo, Providers, RuleImpl};
use kiln_graph::rule_schema::{AttrKind, AttrSchema, RuleSchema};

use crate::runfiles;

/// `filegroup(name, srcs, data)`.
pub struct Filegroup;

impl RuleImpl for Filegroup {
    fn schema(&self) -> RuleSchema {
        const ATTRS: &[AttrSchema] = &[
            AttrSchema::optional("srcs", AttrKind::LabelList),
            AttrSchema::optional("data", AttrKind::LabelList),
            AttrSchema::optional("output_group", AttrKind::String),
        ];
        RuleSchema {
            name: "filegroup",
            attrs: ATTRS,
            test: false,
            executable: false,
        }
    }

    fn analyze(&self, ctx: &mut AnalysisContext<'_>) -> Result<Providers, AnalysisError> {
        let files = ctx.files("srcs")?;
        let runfiles = runfiles::collect(ctx, &files, &["data"])?;
        Ok(Providers::new(DefaultInfo {
            files,
            executable: None,
            runfiles,
        }))
    }
}

/// `alias(name, actual)`.
pub struct Alias;

impl RuleImpl for Alias {
    fn schema(&self) -> RuleSchema {
        const ATTRS: &[AttrSchema] = &[AttrSchema::mandatory("actual", AttrKind::Label)];
        RuleSchema {
            name: "alias",
            attrs: ATTRS,
            test: false,
            executable: false,
        }
    }

    fn analyze(&self, ctx: &mut AnalysisContext<'_>) -> Result<Providers, AnalysisError> {
        let actual = ctx.target.labels("actual");
        let Some(actual) = actual.first() else {
            return Err(ctx.error("`alias` needs `actual`"));
        };
        Ok(ctx.dep(actual)?.clone())
    }
}
