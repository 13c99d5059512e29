//! Downloads a module version into Kiln's module cache (`<cache>/go/modcache`) with the local
//! `go mod download`, which honours GOPROXY, GOPRIVATE, GONOSUMDB, GONOSUMCHECK and GOSUMDB from
//! Kiln's environment. Callers verify the result against go.sum themselves.

use std::path::{Path, PathBuf};

use kiln_graph::analysis::WorkspaceInfo;

/// Environment variables passed through from Kiln's own environment.
const PASSED: &[&str] = &[
    "GOPROXY",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GONOSUMCHECK",
    "GOSUMDB",
    "GOINSECURE",
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

/// Downloads `module@version` and returns the extracted directory.
pub fn go_mod_download(ws: &WorkspaceInfo, module: &str, version: &str) -> Result<PathBuf, String> {
    let go = local_go().ok_or("no `go` on PATH to download modules with")?;
    let base = ws.cache_dir.join("go");
    let modcache = base.join("modcache");
    let work = base.join("work");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
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
        ("HOME".into(), base.to_string_lossy().into()),
    ];
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
