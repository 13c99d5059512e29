//! Checks a request before anything touches the disk: every exec-root path stays inside
//! the exec root, and inputs, outputs and output directories do not collide.

use std::collections::HashSet;

use crate::{ExecError, SandboxRequest, EXEC_ROOT};

/// Validates all paths of `req`.
pub(crate) fn validate(req: &SandboxRequest) -> Result<(), ExecError> {
    let argv0 = req.argv.first().ok_or(ExecError::EmptyArgv)?;
    if !argv0.starts_with('/') {
        relative(argv0)?;
    }
    if !req.working_directory.is_empty() {
        relative(&req.working_directory)?;
    }
    let mut inputs = HashSet::new();
    for input in &req.inputs {
        relative(&input.path)?;
        inputs.insert(input.path.as_str());
    }
    for dir in &req.input_dirs {
        relative(dir)?;
    }
    for out in &req.outputs {
        relative(out)?;
        if inputs.contains(out.as_str()) {
            return Err(invalid(out, "declared both as input and as output"));
        }
    }
    for dir in &req.output_dirs {
        relative(dir)?;
        let prefix = format!("{dir}/");
        if let Some(input) = req.inputs.iter().find(|i| i.path.starts_with(&prefix)) {
            return Err(invalid(&input.path, "input inside an output directory"));
        }
    }
    if let Some(dir) = &req.output_files_dir {
        if !dir.is_absolute() {
            return Err(invalid(
                &dir.to_string_lossy(),
                "the output files directory must be an absolute host path",
            ));
        }
    }
    for m in &req.mounts {
        if !m.sandbox_path.starts_with('/') || m.sandbox_path == "/" {
            return Err(invalid(&m.sandbox_path, "mount point must be absolute"));
        }
        relative(&m.sandbox_path[1..])?;
        if m.sandbox_path == EXEC_ROOT || EXEC_ROOT.starts_with(&format!("{}/", m.sandbox_path)) {
            return Err(invalid(&m.sandbox_path, "mount overlaps the exec root"));
        }
        // Inside the exec root (a toolchain under `external/`), nothing staged or produced may
        // lie at or under it, nor on a directory above it.
        if let Some(rel) = m.sandbox_path.strip_prefix(&format!("{EXEC_ROOT}/")) {
            let under = |path: &str| {
                path == rel
                    || path.starts_with(&format!("{rel}/"))
                    || rel.starts_with(&format!("{path}/"))
            };
            let staged = req.inputs.iter().map(|i| i.path.as_str());
            let produced = req
                .outputs
                .iter()
                .chain(&req.output_dirs)
                .map(String::as_str);
            let dirs = req.input_dirs.iter().map(String::as_str);
            if let Some(clash) = staged.chain(produced).chain(dirs).find(|p| under(p)) {
                return Err(invalid(
                    clash,
                    "collides with a toolchain mount in the exec root",
                ));
            }
        }
    }
    Ok(())
}

/// A normalized relative path: non-empty components, no `.` or `..`, no NUL.
fn relative(path: &str) -> Result<(), ExecError> {
    if path.starts_with('/') {
        return Err(invalid(path, "must be relative to the exec root"));
    }
    if path.contains('\0') {
        return Err(invalid(path, "contains NUL"));
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid(
            path,
            "must be normalized (no empty, `.` or `..` components)",
        ));
    }
    Ok(())
}

fn invalid(path: &str, reason: &'static str) -> ExecError {
    ExecError::InvalidPath {
        path: path.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InputFile;

    fn req(argv0: &str, input: &str, output: &str) -> SandboxRequest {
        SandboxRequest {
            argv: vec![argv0.into()],
            inputs: vec![InputFile {
                path: input.into(),
                source: "/dev/null".into(),
                executable: false,
                immutable: false,
            }],
            outputs: vec![output.into()],
            ..Default::default()
        }
    }

    #[test]
    fn rejects_escapes_and_collisions() {
        assert!(validate(&req("/bin/sh", "a/b", "c")).is_ok());
        assert!(validate(&req("tools/x", "a/b", "c")).is_ok());
        for (argv0, input, output) in [
            ("../x", "a", "b"),
            ("/bin/sh", "/etc/passwd", "b"),
            ("/bin/sh", "a/../../b", "c"),
            ("/bin/sh", "a//b", "c"),
            ("/bin/sh", "a", "./c"),
            ("/bin/sh", "a", "a"),
            ("/bin/sh", "a", ""),
        ] {
            assert!(
                validate(&req(argv0, input, output)).is_err(),
                "{argv0} {input} {output}"
            );
        }
    }

    #[test]
    fn the_output_files_directory_is_an_absolute_host_path() {
        let with_dir = |dir: &str| {
            let mut r = req("/bin/sh", "a", "b");
            r.output_files_dir = Some(dir.into());
            validate(&r)
        };
        assert!(with_dir("/var/cache/kiln/sandbox/1-2.out").is_ok());
        assert!(with_dir("sandbox/1-2.out").is_err());
    }

    #[test]
    fn a_mount_inside_the_exec_root_must_not_cover_an_input_or_output() {
        let with_mount = |input: &str, output: &str, at: &str| {
            let mut r = req("/bin/sh", input, output);
            r.mounts = vec![crate::ExtraMount {
                host: "/opt/tool".into(),
                sandbox_path: at.into(),
            }];
            validate(&r)
        };
        let tool = "/kiln/execroot/external/tool";
        assert!(with_mount("external/other/x", "out", tool).is_ok());
        assert!(with_mount("a", "b", "/kiln/toolchains/go").is_ok());
        for (input, output, at) in [
            ("external/tool/x", "out", tool),
            ("a", "external/tool", tool),
            ("external", "out", tool),
            ("a", "b", "/kiln/execroot"),
            ("a", "b", "/kiln"),
        ] {
            assert!(
                with_mount(input, output, at).is_err(),
                "{input} {output} {at}"
            );
        }
    }
}
