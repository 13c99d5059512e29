//! Command lines for one Go package: `asm -gensymabis`, `compile -o pkg.x -linkobj pkg.a` with a
//! per-action importcfg (only the packages it imports, pointing at their export data), `asm` for
//! each `.s` file and `pack r`, as `go build` runs them (see docs/architecture.md). All of it runs
//! as one bash script in the sandbox; paths are exec-root-relative or under the SDK mount.

use super::toolchain::{SandboxSdk, SDK_MOUNT};

/// Standard-library packages that `go build` compiles without `-complete` although they have no
/// assembly (they declare bodyless functions provided through linkname).
const INCOMPLETE_STD: &[&str] = &[
    "bytes",
    "internal/poll",
    "net",
    "os",
    "runtime/metrics",
    "runtime/pprof",
    "runtime/trace",
    "sync",
    "syscall",
    "time",
];

/// Everything needed to compile one package.
#[derive(Clone, Debug, Default)]
pub struct CompileRequest {
    /// The package path given to `-p` (`main` for commands).
    pub package_path: String,
    /// `.go` files (exec-root-relative, or absolute under the SDK mount for the standard library).
    pub go_files: Vec<String>,
    /// `.s` files.
    pub s_files: Vec<String>,
    /// Directory of the sources (an `-I` directory for assembly includes).
    pub src_dir: String,
    /// `importcfg` entries: (package path, export data path).
    pub imports: Vec<(String, String)>,
    /// `importmap` entries: (import path as written, package path), for vendored packages.
    pub importmaps: Vec<(String, String)>,
    /// The embedcfg JSON, when the package embeds files.
    pub embedcfg: Option<String>,
    /// `-lang` (e.g. `go1.22`); `None` for the standard library, which uses the SDK's own version.
    pub lang: String,
    /// Whether this is a standard-library package (`-std`).
    pub std: bool,
    /// Extra compiler flags (`gc_goopts`).
    pub gc_flags: Vec<String>,
    /// Output: export data.
    pub out_export: String,
    /// Output: link object.
    pub out_link: String,
}

/// Host tools the archive step uses (their digests go into the action's platform properties).
pub const STAT: &str = "/usr/bin/stat";
/// See [`STAT`].
pub const CAT: &str = "/bin/cat";

/// Quotes a word for bash.
pub fn sh(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Writes lines to a file with `printf` (a bash builtin: no host tool needed); `target` is a
/// shell word, already quoted.
pub fn write_file(target: &str, lines: &[String]) -> String {
    let mut s = String::from("printf '%s\\n'");
    for l in lines {
        s.push(' ');
        s.push_str(&sh(l));
    }
    if lines.is_empty() {
        s.push_str(" ''");
    }
    s.push_str(&format!(" > {target}\n"));
    s
}

/// The bash script compiling the package.
pub fn script(req: &CompileRequest, sdk: &SandboxSdk) -> String {
    let tool = |name: &str| sdk.tool(name);
    // The private TMPDIR is empty and writable: scratch files go there.
    let mut s = String::from(
        "set -euo pipefail\nW=\"$TMPDIR\"\nE=\"$PWD\"\nbasename_() { printf '%s' \"${1##*/}\"; }\n",
    );
    let mut cfg = vec!["# import config".to_string()];
    for (from, to) in &req.importmaps {
        cfg.push(format!("importmap {from}={to}"));
    }
    for (path, file) in &req.imports {
        cfg.push(format!("packagefile {path}={file}"));
    }
    s.push_str(&write_file("\"$W/importcfg\"", &cfg));
    if let Some(embed) = &req.embedcfg {
        s.push_str(&format!("printf '%s' {} > \"$W/embedcfg\"\n", sh(embed)));
    }
    let mut asm_flags = format!(
        "-p {} -trimpath \"$E=>\" -I \"$W/\" -I {SDK_MOUNT}/pkg/include -I {} -D GOOS_{} -D GOARCH_{}",
        sh(&req.package_path),
        sh(&req.src_dir),
        sdk.goos,
        sdk.goarch
    );
    if let Some(flag) = sdk.codegen_flag() {
        asm_flags.push(' ');
        asm_flags.push_str(flag);
    }
    for define in sdk.asm_defines() {
        asm_flags.push_str(&format!(" -D {define}"));
    }
    let has_asm = !req.s_files.is_empty();
    if has_asm {
        // As `go build`: an empty go_asm.h for the symabis pass; compile then writes the real one.
        s.push_str(": > \"$W/go_asm.h\"\n");
        s.push_str(&format!(
            "{} {asm_flags} -gensymabis -o \"$W/symabis\"",
            tool("asm")
        ));
        for f in &req.s_files {
            s.push(' ');
            s.push_str(&sh(f));
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "{} -o {} -linkobj {} -trimpath \"$E=>\" -p {}",
        tool("compile"),
        sh(&req.out_export),
        sh(&req.out_link),
        sh(&req.package_path)
    ));
    if let Some(flag) = sdk.codegen_flag() {
        s.push(' ');
        s.push_str(flag);
    }
    s.push_str(&format!(" -lang={}", sh(&req.lang)));
    if req.std {
        s.push_str(" -std");
    }
    let incomplete = has_asm || (req.std && INCOMPLETE_STD.contains(&req.package_path.as_str()));
    if !incomplete {
        s.push_str(" -complete");
    }
    s.push_str(&format!(" -goversion {}", sh(&sdk.version)));
    if has_asm {
        s.push_str(" -symabis \"$W/symabis\" -asmhdr \"$W/go_asm.h\"");
    }
    s.push_str(" -c=4 -nolocalimports -importcfg \"$W/importcfg\"");
    if req.embedcfg.is_some() {
        s.push_str(" -embedcfg \"$W/embedcfg\"");
    }
    s.push_str(" -pack");
    for f in &req.gc_flags {
        s.push(' ');
        s.push_str(&sh(f));
    }
    s.push_str(" --");
    for f in &req.go_files {
        s.push(' ');
        s.push_str(&sh(f));
    }
    s.push('\n');
    if has_asm {
        let mut objects = Vec::new();
        for (n, f) in req.s_files.iter().enumerate() {
            let obj = format!("\"$W/asm{n}.o\"");
            s.push_str(&format!("{} {asm_flags} -o {obj} {}\n", tool("asm"), sh(f)));
            objects.push(obj);
        }
        // `go build` appends the objects in-process (there is no `pack` binary in the SDK since
        // Go 1.22): an ar member header written with printf, the object appended with cat.
        for obj in &objects {
            s.push_str(&format!(
                "n=$({STAT} -c %s {obj}); printf '%-16s%-12s%-6s%-6s%-8s%-10s`\\n' \"$(basename_ {obj})\" 0 0 0 644 \"$n\" >> {out}; {CAT} {obj} >> {out}; if (( n % 2 )); then printf '\\n' >> {out}; fi\n",
                out = sh(&req.out_link)
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn package_with_assembly_and_embed() {
        let sdk = SandboxSdk::host("go1.26.8", "linux", "amd64");
        let req = CompileRequest {
            package_path: "example.com/m/fast".into(),
            go_files: vec!["fast/a.go".into(), "fast/b c.go".into()],
            s_files: vec!["fast/a_amd64.s".into()],
            src_dir: "fast".into(),
            imports: vec![("fmt".into(), "kiln-out/go/std/linux_amd64/fmt.x".into())],
            importmaps: vec![],
            embedcfg: Some("{\"Patterns\":{}}".into()),
            lang: "go1.22".into(),
            std: false,
            gc_flags: vec![],
            out_export: "kiln-out/bin/fast/fast.x".into(),
            out_link: "kiln-out/bin/fast/fast.a".into(),
        };
        expect![[r#"
            set -euo pipefail
            W="$TMPDIR"
            E="$PWD"
            basename_() { printf '%s' "${1##*/}"; }
            printf '%s\n' '# import config' 'packagefile fmt=kiln-out/go/std/linux_amd64/fmt.x' > "$W/importcfg"
            printf '%s' '{"Patterns":{}}' > "$W/embedcfg"
            : > "$W/go_asm.h"
            /kiln/execroot/external/kiln_go_sdk/pkg/tool/linux_amd64/asm -p example.com/m/fast -trimpath "$E=>" -I "$W/" -I /kiln/execroot/external/kiln_go_sdk/pkg/include -I fast -D GOOS_linux -D GOARCH_amd64 -D GOAMD64_v1 -gensymabis -o "$W/symabis" fast/a_amd64.s
            /kiln/execroot/external/kiln_go_sdk/pkg/tool/linux_amd64/compile -o kiln-out/bin/fast/fast.x -linkobj kiln-out/bin/fast/fast.a -trimpath "$E=>" -p example.com/m/fast -lang=go1.22 -goversion go1.26.8 -symabis "$W/symabis" -asmhdr "$W/go_asm.h" -c=4 -nolocalimports -importcfg "$W/importcfg" -embedcfg "$W/embedcfg" -pack -- fast/a.go 'fast/b c.go'
            /kiln/execroot/external/kiln_go_sdk/pkg/tool/linux_amd64/asm -p example.com/m/fast -trimpath "$E=>" -I "$W/" -I /kiln/execroot/external/kiln_go_sdk/pkg/include -I fast -D GOOS_linux -D GOARCH_amd64 -D GOAMD64_v1 -o "$W/asm0.o" fast/a_amd64.s
            n=$(/usr/bin/stat -c %s "$W/asm0.o"); printf '%-16s%-12s%-6s%-6s%-8s%-10s`\n' "$(basename_ "$W/asm0.o")" 0 0 0 644 "$n" >> kiln-out/bin/fast/fast.a; /bin/cat "$W/asm0.o" >> kiln-out/bin/fast/fast.a; if (( n % 2 )); then printf '\n' >> kiln-out/bin/fast/fast.a; fi
        "#]]
        .assert_eq(&script(&req, &sdk));
    }
}
