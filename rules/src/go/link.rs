//! The link step: an importcfg listing every package of the binary (link objects), the module
//! information `go version -m` prints (`modinfo`), and the flags `go build` passes
//! (`-X=runtime.godebugDefault=...`, `-buildmode=exe`), with an empty build ID for
//! reproducibility.

use super::literal::quote;
use super::toolchain::SandboxSdk;

/// cmd/go's markers around the module information in a binary.
const INFO_START: [u8; 16] = [
    0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18, 0xe6,
];
const INFO_END: [u8; 16] = [
    0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8, 0xf2,
];

/// A dependency module recorded in the binary.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DepModule {
    /// Module path.
    pub path: String,
    /// Version.
    pub version: String,
    /// `h1:` sum from go.sum (empty for replaced or vendored modules, as cmd/go records them).
    pub sum: String,
    /// The `replace` target, recorded on a `=>` line.
    pub replace: Option<Box<DepModule>>,
}

impl DepModule {
    /// Appends the module as `runtime/debug.BuildInfo.String` formats it: `word`, path and
    /// version, then the sum, or a newline and the replacement's own `=>` line.
    fn format(&self, word: &str, out: &mut String) {
        out.push_str(&format!("{word}\t{}\t{}", self.path, self.version));
        match &self.replace {
            None => out.push_str(&format!("\t{}", self.sum)),
            Some(replacement) => {
                out.push('\n');
                replacement.format("=>", out);
            }
        }
        out.push('\n');
    }
}

/// What `go version -m` shows for a binary.
#[derive(Clone, Debug, Default)]
pub struct ModInfo {
    /// Import path of the main package.
    pub main_package: String,
    /// The main module's path (empty outside a module).
    pub main_module: String,
    /// Dependency modules providing packages of the binary.
    pub deps: Vec<DepModule>,
    /// The default GODEBUG string (may be empty).
    pub godebug: String,
    /// The `-ldflags` a `go build` user would pass for the same link (`-s -w` in fastbuild, the
    /// `x_defs` as `-X=k=v`, `gc_linkopts`), recorded as `go build -ldflags` records them.
    pub ldflags: String,
}

impl ModInfo {
    /// The text between the markers, as cmd/go writes it for `CGO_ENABLED=0` builds.
    pub fn text(&self, sdk: &SandboxSdk) -> String {
        let mut s = format!("path\t{}\n", self.main_package);
        if !self.main_module.is_empty() {
            s.push_str(&format!("mod\t{}\t(devel)\t\n", self.main_module));
        }
        let mut deps = self.deps.clone();
        deps.sort();
        for d in &deps {
            d.format("dep", &mut s);
        }
        s.push_str("build\t-buildmode=exe\nbuild\t-compiler=gc\n");
        if !self.ldflags.is_empty() {
            let quote_needed = self.ldflags.contains([' ', '\t', '\r', '\n', '"', '`']);
            let value = if quote_needed {
                quote(self.ldflags.as_bytes())
            } else {
                self.ldflags.clone()
            };
            s.push_str(&format!("build\t-ldflags={value}\n"));
        }
        if !self.godebug.is_empty() {
            s.push_str(&format!("build\tDefaultGODEBUG={}\n", self.godebug));
        }
        s.push_str(&format!(
            "build\tCGO_ENABLED=0\nbuild\tGOARCH={}\nbuild\tGOOS={}\n",
            sdk.goarch, sdk.goos
        ));
        if let Some((key, value)) = &sdk.arch_env {
            s.push_str(&format!("build\t{key}={value}\n"));
        }
        s
    }

    /// The importcfg `modinfo` line.
    pub fn importcfg_line(&self, sdk: &SandboxSdk) -> String {
        let mut bytes = INFO_START.to_vec();
        bytes.extend_from_slice(self.text(sdk).as_bytes());
        bytes.extend_from_slice(&INFO_END);
        format!("modinfo {}", quote(&bytes))
    }
}

/// Words joined into one flag string as cmd/go's `quoted.Join` does: a word with a space, tab,
/// newline or quote is wrapped in `'`, or in `"` when it holds a `'`.
pub fn quoted_join(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty() && !w.contains([' ', '\t', '\n', '\r', '\'', '"']) {
                w.clone()
            } else if !w.contains('\'') {
                format!("'{w}'")
            } else {
                format!("\"{w}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Everything needed to link one binary.
#[derive(Clone, Debug, Default)]
pub struct LinkRequest {
    /// Link objects of every package of the binary: (package path, `.a` path), main first.
    pub packages: Vec<(String, String)>,
    /// The main package's archive.
    pub main_archive: String,
    /// Module information (`None` for test binaries).
    pub modinfo: Option<ModInfo>,
    /// The default GODEBUG.
    pub godebug: String,
    /// `-X` definitions (`x_defs`), as `name=value`.
    pub x_defs: Vec<String>,
    /// Extra linker flags.
    pub flags: Vec<String>,
    /// The executable to write.
    pub out: String,
}

/// The importcfg of the link: a `packagefile` line per package, then the module information.
/// It depends only on the analysis, so a separate action writes it (a cache hit after the first
/// build) and the link runs the linker without a shell.
pub fn importcfg(req: &LinkRequest, sdk: &SandboxSdk) -> Vec<String> {
    let mut cfg = vec!["# import config".to_string()];
    for (path, file) in &req.packages {
        cfg.push(format!("packagefile {path}={file}"));
    }
    if let Some(info) = &req.modinfo {
        cfg.push(info.importcfg_line(sdk));
    }
    cfg
}

/// The argv of the action writing the importcfg to `out`: bash's `printf` builtin with one
/// argument per line. Inside one `bash -c` script the lines would be a single argument, which
/// Linux caps at 128 KiB (`MAX_ARG_STRLEN`, some 1,800 packages); as separate arguments only the
/// whole command line's limit applies (`ARG_MAX`, 2 MiB under the default stack limit).
pub fn importcfg_arguments(req: &LinkRequest, sdk: &SandboxSdk, out: &str) -> Vec<String> {
    let mut argv = vec![
        "/bin/bash".to_string(),
        "-c".to_string(),
        "set -euo pipefail; out=\"$1\"; shift; printf '%s\\n' \"$@\" > \"$out\"".to_string(),
        "kiln-write-importcfg".to_string(),
        out.to_string(),
    ];
    argv.extend(importcfg(req, sdk));
    argv
}

/// The linker's command line, reading the importcfg at `importcfg`. The action's environment
/// sets `GOROOT` empty, as `go build -trimpath` does: no SDK path is recorded in the binary.
pub fn arguments(req: &LinkRequest, sdk: &SandboxSdk, importcfg: &str) -> Vec<String> {
    let mut args = vec![
        sdk.tool("link"),
        "-o".to_string(),
        req.out.clone(),
        "-importcfg".to_string(),
        importcfg.to_string(),
    ];
    if !req.godebug.is_empty() {
        args.push(format!("-X=runtime.godebugDefault={}", req.godebug));
    }
    for x in &req.x_defs {
        args.push("-X".to_string());
        args.push(x.clone());
    }
    args.push(format!("-buildmode={}", sdk.link_buildmode()));
    args.push("-buildid=".to_string());
    args.extend(req.flags.iter().cloned());
    args.push(req.main_archive.clone());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_joined_as_cmd_go_quotes_them() {
        let words: Vec<String> = ["-s", "-extldflags", "-static -lfoo", "it's", ""]
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(
            quoted_join(&words),
            "-s -extldflags '-static -lfoo' \"it's\" ''"
        );
    }

    /// Runs the real bash on the arguments of a 5,000-package link (about 300 KB of importcfg,
    /// past the 128 KiB a single argument may hold) and reads back what it wrote.
    #[test]
    fn importcfg_of_thousands_of_packages_is_written_whole() {
        let sdk = SandboxSdk::host("go1.26.8", "linux", "amd64");
        let req = LinkRequest {
            packages: (0..5000)
                .map(|i| {
                    (
                        format!("example.com/monorepo/service{i}/internal/handlers"),
                        format!("_golink/{i:04}-handlers.a"),
                    )
                })
                .collect(),
            ..LinkRequest::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("importcfg");
        let argv = importcfg_arguments(&req, &sdk, &out.to_string_lossy());
        #[allow(clippy::disallowed_methods)] // Runs the action's argv as the sandbox would.
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .unwrap();
        assert!(status.success());
        let written = std::fs::read_to_string(&out).unwrap();
        assert!(written.len() > 128 << 10, "{}", written.len());
        assert_eq!(written, importcfg(&req, &sdk).join("\n") + "\n");
    }

    #[test]
    fn modinfo_as_go_build_writes_it() {
        let sdk = SandboxSdk::host("go1.26.8", "linux", "amd64");
        let info = ModInfo {
            main_package: "example.com/gx".into(),
            main_module: "example.com/gx".into(),
            deps: vec![],
            godebug: "panicnil=1".into(),
            ldflags: String::new(),
        };
        assert_eq!(
            info.text(&sdk),
            "path\texample.com/gx\nmod\texample.com/gx\t(devel)\t\nbuild\t-buildmode=exe\nbuild\t-compiler=gc\nbuild\tDefaultGODEBUG=panicnil=1\nbuild\tCGO_ENABLED=0\nbuild\tGOARCH=amd64\nbuild\tGOOS=linux\nbuild\tGOAMD64=v1\n"
        );
        assert!(info.importcfg_line(&sdk).starts_with(
            "modinfo \"0w\\xaf\\x0c\\x92t\\x08\\x02A\\xe1\\xc1\\x07\\xe6\\xd6\\x18\\xe6path"
        ));
    }

    #[test]
    fn replaced_modules_get_a_replacement_line_as_runtime_debug_formats_it() {
        let sdk = SandboxSdk::host("go1.26.8", "linux", "amd64");
        let dep = |path: &str, version: &str, sum: &str, replace| DepModule {
            path: path.into(),
            version: version.into(),
            sum: sum.into(),
            replace,
        };
        let info = ModInfo {
            main_package: "example.com/app".into(),
            deps: vec![
                dep(
                    "example.com/local",
                    "v0.0.0",
                    "",
                    Some(Box::new(dep("./local", "(devel)", "", None))),
                ),
                dep("a.com/m", "v1.0.0", "h1:x=", None),
            ],
            ..Default::default()
        };
        let text = info.text(&sdk);
        assert!(
            text.starts_with("path\texample.com/app\ndep\ta.com/m\tv1.0.0\th1:x=\ndep\texample.com/local\tv0.0.0\n=>\t./local\t(devel)\t\n\nbuild\t"),
            "{text}"
        );
    }

    #[test]
    fn cross_links_use_the_host_linker_and_the_target_build_mode() {
        let host = SandboxSdk::host("go1.26.8", "linux", "amd64");
        let arm = host.for_target("linux", "arm64", Some(("GOARM64".into(), "v8.0".into())));
        let info = ModInfo {
            main_package: "example.com/gx".into(),
            ..Default::default()
        };
        let text = info.text(&arm);
        assert!(
            text.ends_with("build\tGOARCH=arm64\nbuild\tGOOS=linux\nbuild\tGOARM64=v8.0\n"),
            "{text}"
        );
        let windows = host.for_target("windows", "amd64", Some(("GOAMD64".into(), "v1".into())));
        let req = LinkRequest {
            main_archive: "m.a".into(),
            out: "app.exe".into(),
            ..Default::default()
        };
        let args = arguments(&req, &windows, "app.importcfg");
        assert_eq!(
            args[..5],
            [
                "/kiln/execroot/external/kiln_go_sdk/pkg/tool/linux_amd64/link",
                "-o",
                "app.exe",
                "-importcfg",
                "app.importcfg"
            ]
        );
        assert!(args.ends_with(&["-buildmode=pie".into(), "-buildid=".into(), "m.a".into()]));
        assert!(arguments(&req, &arm, "c").contains(&"-buildmode=exe".to_string()));
    }
}
