//! Downloads a module version into Kiln's module cache (`<cache>/go/modcache`) with the local
//! `go mod download`, which honours GOPROXY, GOPRIVATE, GONOPROXY, GONOSUMDB, GOSUMDB and
//! GOINSECURE as the user's `go` sees them: from Kiln's environment, else from the go env file
//! `go env -w` writes. Callers verify the result against go.sum themselves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_graph::analysis::WorkspaceInfo;

/// Go settings that decide where modules come from and how they are checked; `go env -w` may
/// have set them in the user's go env file.
const SETTINGS: &[&str] = &[
    "GOPROXY",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GOSUMDB",
    "GOINSECURE",
    "GOVCS",
    "GOAUTH",
];

/// What locates the user's go env file (`$GOENV`, else `$XDG_CONFIG_HOME/go/env`, else
/// `$HOME/.config/go/env`).
const ENV_FILE_LOCATORS: &[&str] = &["GOENV", "XDG_CONFIG_HOME", "HOME"];

/// What a download needs from Kiln's own environment: the network settings, and for modules
/// fetched straight from version control (`GOPROXY=direct`, `GOPRIVATE`), `git` on PATH with the
/// user's configuration and credentials (`HOME` for `~/.gitconfig` and `~/.netrc`, the SSH
/// agent).
const PASSED: &[&str] = &[
    "PATH",
    "HOME",
    "SSH_AUTH_SOCK",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_CONFIG_GLOBAL",
    "NETRC",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The `go` binary on Kiln's PATH.
pub fn local_go() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("go"))
        .find(|p| p.is_file())
}

/// The module-fetching settings as the user's `go` sees them: `go env -json` run with Kiln's
/// environment (so values set there win) and the user's go env file. The download itself then
/// runs with `GOENV=off` and these values, away from the user's module cache.
fn effective_settings(go: &Path, cwd: &Path) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = vec![("GOTOOLCHAIN".into(), "local".into())];
    for name in SETTINGS.iter().chain(ENV_FILE_LOCATORS) {
        if let Ok(v) = std::env::var(name) {
            env.push((name.to_string(), v));
        }
    }
    let mut argv: Vec<&std::ffi::OsStr> = vec![go.as_os_str(), "env".as_ref(), "-json".as_ref()];
    argv.extend(SETTINGS.iter().map(|s| std::ffi::OsStr::new(*s)));
    let out = kiln_exec::host_command::run(&argv, &env, cwd).map_err(|e| e.to_string())?;
    let values: BTreeMap<String, String> = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("`go env -json` failed: {}", out.stderr_text()))?;
    Ok(values.into_iter().filter(|(_, v)| !v.is_empty()).collect())
}

/// Downloads `module@version` with the `go` command `go` and returns the extracted directory.
pub fn go_mod_download(
    ws: &WorkspaceInfo,
    go: &Path,
    module: &str,
    version: &str,
) -> Result<PathBuf, String> {
    let base = ws.cache_dir.join("go");
    let modcache = base.join("modcache");
    let work = base.join("work");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    // Run outside any module: a go.mod asking for a newer Go would stop `go env`.
    let settings = effective_settings(go, &work)?;
    let mut env: Vec<(String, String)> = vec![
        ("GOMODCACHE".into(), modcache.to_string_lossy().into()),
        ("GOPATH".into(), base.join("path").to_string_lossy().into()),
        (
            "GOCACHE".into(),
            base.join("gocache").to_string_lossy().into(),
        ),
        ("GOTOOLCHAIN".into(), "local".into()),
        ("GOENV".into(), "off".into()),
        ("GOFLAGS".into(), "-modcacherw".into()),
        ("GO111MODULE".into(), "on".into()),
        // A download runs unattended: git must fail rather than wait for a password.
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
    ];
    env.extend(settings);
    for name in PASSED {
        if let Ok(v) = std::env::var(name) {
            env.push((name.to_string(), v));
        }
    }
    let spec = format!("{module}@{version}");
    let out = kiln_exec::host_command::run(
        &[
            go.as_os_str(),
            "mod".as_ref(),
            "download".as_ref(),
            "-json".as_ref(),
            spec.as_ref(),
        ],
        &env,
        &work,
    )
    .map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("`go mod download {spec}` failed: {}", out.stderr_text()))?;
    if let Some(err) = json.get("Error").and_then(|e| e.as_str()) {
        return Err(format!("`go mod download {spec}`: {err}"));
    }
    let dir = json
        .get("Dir")
        .and_then(|d| d.as_str())
        .ok_or_else(|| format!("`go mod download {spec}` printed no directory"))?;
    Ok(Path::new(dir).to_path_buf())
}
