//! Runfiles: the files a binary needs at run time, gathered from its own `data`/`srcs` and from
//! its dependencies' runfiles, keyed by their path in the runfiles tree.

use kiln_graph::action::Artifact;
use kiln_graph::analysis::{AnalysisContext, AnalysisError};

/// Collects runfiles: the given files plus the default files and runfiles of every label in `attrs`.
pub fn collect(
    ctx: &AnalysisContext<'_>,
    own: &[Artifact],
    attrs: &[&str],
) -> Result<Vec<(String, Artifact)>, AnalysisError> {
    let mut runfiles: Vec<(String, Artifact)> = own
        .iter()
        .map(|a| (a.short_path().to_string(), a.clone()))
        .collect();
    for attr in attrs {
        for label in ctx.target.labels(attr) {
            let dep = ctx.dep(&label)?;
            runfiles.extend(
                dep.default
                    .files
                    .iter()
                    .map(|a| (a.short_path().to_string(), a.clone())),
            );
            if let Some(exe) = &dep.default.executable {
                runfiles.push((exe.short_path().to_string(), exe.clone()));
            }
            runfiles.extend(dep.default.runfiles.iter().cloned());
        }
    }
    runfiles.sort();
    runfiles.dedup_by(|a, b| a.0 == b.0);
    Ok(runfiles)
}
