//! The C toolchain of Rust actions, declared as every file that decides what it produces: rustc
//! links through `cc`, and build scripts compile C with `cc` / `c++` and archive it with `ar`.
//!
//! The drivers alone do not say which compiler runs: `cc` starts `cc1` (or `cc1plus`),
//! `collect2`, `as` and `ld`, found through its own search path. The toolchain is therefore read
//! from the driver once per process (`cc -print-search-dirs` and `-print-prog-name`): its install
//! directory (whose path names the target and version), the compilers proper (`cc1`, `cc1plus`,
//! `lto-wrapper`, wherever the distribution keeps them), and the `as`, `ld` and `collect2` it
//! finds in its program directories or on the actions' `PATH`. Each becomes
//! a host tool of every Rust action: a file by content, a directory by the names, sizes and
//! modification times of its executables (see `kiln_graph::host::tool_digests`), so an upgraded
//! compiler, assembler or linker changes every key that could depend on it. The C library and its
//! headers come with the dynamic loader, which every action's host-system digest covers; other
//! system libraries and headers a build script may use (found with pkg-config, say) are not
//! declared.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::LINKER;
use crate::ACTION_PATH;

/// The C++ driver build scripts get as `CXX`.
pub const CXX: &str = "/usr/bin/c++";
/// The archiver build scripts get as `AR`.
pub const AR: &str = "/usr/bin/ar";

/// Programs the C driver runs besides itself, looked up as it looks them up.
const DRIVEN_PROGRAMS: &[&str] = &["as", "ld", "collect2"];

/// The compilers proper, which GCC keeps in its libexec directory (`/usr/libexec/gcc/...` on
/// Fedora, the install directory on Debian): asked of the driver by name.
const COMPILERS_PROPER: &[&str] = &["cc1", "cc1plus", "lto-wrapper"];

/// The host paths (files and directories) that make up the C toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CcToolchain {
    /// Absolute paths, the drivers first.
    pub tools: Vec<String>,
}

/// The toolchain of the default drivers, resolved once per process.
pub fn default_toolchain() -> &'static CcToolchain {
    static TOOLCHAIN: OnceLock<CcToolchain> = OnceLock::new();
    TOOLCHAIN.get_or_init(|| resolve(Path::new(LINKER), &[CXX, AR]))
}

/// The toolchain of `driver` plus `other_drivers`. A driver that cannot be run still names
/// itself and the others: its digest is then "missing", and an action that needs it fails with
/// the driver's own error.
pub fn resolve(driver: &Path, other_drivers: &[&str]) -> CcToolchain {
    let mut tools = vec![driver.to_string_lossy().to_string()];
    tools.extend(other_drivers.iter().map(|d| d.to_string()));
    let ask = |question: &str| -> Option<String> {
        let out = kiln_exec::host_command::run(
            &[driver.as_os_str(), question.as_ref()],
            &[("PATH", ACTION_PATH), ("LC_ALL", "C")],
            Path::new("/"),
        )
        .ok()?;
        out.success().then(|| out.stdout_text())
    };
    let Some(text) = ask("-print-search-dirs") else {
        return CcToolchain { tools };
    };
    let search = SearchDirs::parse(&text);
    if let Some(install) = &search.install {
        tools.push(install.to_string_lossy().to_string());
    }
    let path_dirs: Vec<PathBuf> = ACTION_PATH.split(':').map(PathBuf::from).collect();
    for program in DRIVEN_PROGRAMS {
        if let Some(found) = search
            .programs
            .iter()
            .chain(&path_dirs)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
        {
            tools.push(found.to_string_lossy().to_string());
        }
    }
    for program in COMPILERS_PROPER {
        // The full path when the driver has the program, else the bare name (then there is none).
        if let Some(found) = ask(&format!("-print-prog-name={program}")) {
            let found = found.trim();
            if found.starts_with('/') && Path::new(found).is_file() {
                tools.push(found.to_string());
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    tools.retain(|t| seen.insert(t.clone()));
    CcToolchain { tools }
}

/// What `-print-search-dirs` reports (GCC and Clang print the same keys).
#[derive(Debug, Default, PartialEq, Eq)]
struct SearchDirs {
    install: Option<PathBuf>,
    programs: Vec<PathBuf>,
}

impl SearchDirs {
    fn parse(text: &str) -> SearchDirs {
        let mut dirs = SearchDirs::default();
        for line in text.lines() {
            if let Some(dir) = line.strip_prefix("install: ") {
                let dir = dir.trim();
                if !dir.is_empty() {
                    dirs.install = Some(PathBuf::from(dir));
                }
            } else if let Some(list) = line.strip_prefix("programs: ") {
                let list = list.trim().trim_start_matches('=');
                dirs.programs = list
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect();
            }
        }
        dirs
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write_executable(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn gcc_and_clang_search_dirs_parse() {
        let gcc = "install: /usr/lib/gcc/x86_64-linux-gnu/12/\n\
                   programs: =/usr/lib/gcc/x86_64-linux-gnu/12/:/usr/libexec/gcc/x86_64-linux-gnu/12/\n\
                   libraries: =/usr/lib/gcc/x86_64-linux-gnu/12/:/lib/\n";
        assert_eq!(
            SearchDirs::parse(gcc),
            SearchDirs {
                install: Some("/usr/lib/gcc/x86_64-linux-gnu/12/".into()),
                programs: vec![
                    "/usr/lib/gcc/x86_64-linux-gnu/12/".into(),
                    "/usr/libexec/gcc/x86_64-linux-gnu/12/".into()
                ],
            }
        );
        let clang =
            "programs: =/usr/bin:/usr/lib/llvm-14/bin\nlibraries: =/usr/lib/llvm-14/lib/clang/14\n";
        let parsed = SearchDirs::parse(clang);
        assert_eq!(parsed.install, None);
        assert_eq!(parsed.programs.len(), 2);
    }

    /// A fake driver reporting a fake install directory: the toolchain names that directory and the
    /// assembler and linker found in it, so replacing `cc1` or `as` there changes the actions' keys
    /// (through the host-tool digests).
    #[test]
    fn the_toolchain_follows_the_drivers_own_programs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let install = dir.path().join("lib/gcc/12");
        std::fs::create_dir_all(&install).unwrap_or_else(|e| panic!("{e}"));
        write_executable(&install.join("cc1"), "#!/bin/sh\n");
        write_executable(&install.join("as"), "#!/bin/sh\n");
        write_executable(&install.join("collect2"), "#!/bin/sh\n");
        let driver = dir.path().join("cc");
        write_executable(
            &driver,
            &format!(
                "#!/bin/sh\ncase \"$1\" in\n\
                 -print-prog-name=cc1) echo '{0}/cc1' ;;\n\
                 -print-prog-name=*) echo \"${{1#-print-prog-name=}}\" ;;\n\
                 *) echo 'install: {0}/'; echo 'programs: ={0}/:/nowhere' ;;\nesac\n",
                install.display()
            ),
        );
        let toolchain = resolve(&driver, &["/usr/bin/ar"]);
        let names: Vec<&str> = toolchain.tools.iter().map(String::as_str).collect();
        assert_eq!(names[0], driver.to_string_lossy());
        assert_eq!(names[1], "/usr/bin/ar");
        assert!(names.contains(&format!("{}/", install.display()).as_str()));
        assert!(names.contains(&install.join("as").to_string_lossy().as_ref()));
        assert!(names.contains(&install.join("collect2").to_string_lossy().as_ref()));
        // The compiler proper by its own path; a program the driver does not know is left out.
        assert!(names.contains(&install.join("cc1").to_string_lossy().as_ref()));
        assert!(!names.iter().any(|n| n.ends_with("cc1plus")), "{names:?}");
        // `ld` is not in the install directory: found on the actions' PATH if the host has one.
        if Path::new("/usr/bin/ld").is_file() {
            assert!(
                names
                    .iter()
                    .any(|n| n.ends_with("/ld") && !n.starts_with(&*dir.path().to_string_lossy())),
                "{names:?}"
            );
        }

        let digests = |t: &CcToolchain| {
            kiln_graph::host::tool_digests(
                t.tools.iter().cloned(),
                &|p| {
                    kiln_cache::Digest::of_file(kiln_cache::DigestFunction::Blake3, Path::new(p))
                        .ok()
                },
                &|_, _| {},
                kiln_cache::DigestFunction::Blake3,
            )
        };
        let before = digests(&toolchain);
        // A new compiler proper: same driver, same paths.
        write_executable(
            &install.join("cc1"),
            "#!/bin/sh\n# version 2, a longer file\n",
        );
        let after = digests(&resolve(&driver, &["/usr/bin/ar"]));
        assert_ne!(before, after);
    }

    #[test]
    fn a_driver_that_cannot_run_still_names_the_drivers() {
        let toolchain = resolve(Path::new("/nonexistent/cc"), &[CXX, AR]);
        assert_eq!(toolchain.tools, vec!["/nonexistent/cc", CXX, AR]);
    }

    #[test]
    fn the_hosts_toolchain_includes_the_compiler_proper() {
        // The tests need a C compiler (rustc links with it).
        let toolchain = default_toolchain();
        assert!(
            toolchain
                .tools
                .iter()
                .any(|t| t.ends_with("/cc1") && Path::new(t).is_file()),
            "no compiler proper in {:?}",
            toolchain.tools
        );
    }
}
