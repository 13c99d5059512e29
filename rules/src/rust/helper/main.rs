//! `kiln-rust-helper`: the small program Kiln's Rust actions run through (rules_rust calls its
//! equivalent the process wrapper). It is compiled from these sources by the build's own rustc, std
//! only, and runs inside the sandbox.
//!
//! - `rustc [--env-file F]... [--flags-file F]... [--link-args-file FOR=F]
//!   [--out-dir ORIGINAL=DIR=ARCHIVE] [--native-dir ORIGINAL=DIR=ARCHIVE]... -- RUSTC ARGS...`:
//!   applies what a build script produced (`--native-dir`: a dependency's script's OUT_DIR,
//!   unpacked only when the flags point into it, for the native libraries of a final link)
//!   (environment, flags, link arguments for `test` or `bin=NAME`, `OUT_DIR`), runs rustc, and
//!   turns its JSON diagnostics back into rendered text on stderr while passing artifact
//!   notifications through (the engine starts dependents on the `.rmeta` one).
//! - `build-script --script S --manifest-dir M --out-dir D --out-archive A --flags F
//!   --link-search F --link-args F --env F --dep-env F [--links NAME]
//!   [--dep-env-in FILE=ORIGINAL=DIR=ARCHIVE]...`: runs a build script as cargo does and writes
//!   what its `cargo:` lines asked for. `--dep-env-in` gives a dependency's `DEP_<links>_*` values;
//!   when they name that dependency's OUT_DIR (ORIGINAL), its ARCHIVE is unpacked at DIR and the
//!   values point there, while what this script writes names ORIGINAL again.
//!
//! `${pwd}` in arguments, environment values and the files read stands for the exec root; the
//! build-script mode writes the exec root back as `${pwd}`, so outputs never hold a host path.

mod archive;
mod directives;
mod paths;

use paths::{contains_path, replace_path};

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const PWD: &str = "${pwd}";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("rustc") => run_rustc(&args[1..]),
        Some("build-script") => run_build_script(&args[1..]),
        _ => Err("usage: kiln-rust-helper (rustc|build-script) ...".to_string()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("kiln-rust-helper: {message}");
            ExitCode::from(1)
        }
    }
}

fn exec_root() -> Result<String, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    cwd.to_str()
        .map(str::to_string)
        .ok_or_else(|| "the exec root is not UTF-8".to_string())
}

/// Options as `--name value` pairs, up to a `--` (whose rest is returned separately).
fn options(args: &[String]) -> Result<(Vec<(String, String)>, Vec<String>), String> {
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--" {
            return Ok((pairs, args[i + 1..].to_vec()));
        }
        let name = args[i]
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument `{}`", args[i]))?;
        let value = args
            .get(i + 1)
            .ok_or_else(|| format!("`--{name}` needs a value"))?;
        pairs.push((name.to_string(), value.clone()));
        i += 2;
    }
    Ok((pairs, Vec::new()))
}

fn read_lines(path: &str, root: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace(PWD, root))
        .collect())
}

fn run_rustc(args: &[String]) -> Result<u8, String> {
    let root = exec_root()?;
    let (opts, argv) = options(args)?;
    let (program, rest) = argv.split_first().ok_or("no rustc command after `--`")?;
    let mut command = Command::new(program);
    for (name, value) in std::env::vars() {
        if value.contains(PWD) {
            command.env(name, value.replace(PWD, &root));
        }
    }
    // Build-script output names the script's OUT_DIR; this action unpacks it elsewhere.
    let mut flag_lines: Vec<String> = Vec::new();
    for (name, value) in &opts {
        if name == "flags-file" {
            flag_lines.extend(read_lines(value, &root)?);
        }
    }
    let mut moved: Vec<(String, String)> = Vec::new();
    for (name, value) in &opts {
        if name != "out-dir" && name != "native-dir" {
            continue;
        }
        let mut parts = value.splitn(3, '=');
        let (Some(original), Some(dir), Some(archive_path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("`--{name}` takes ORIGINAL=DIR=ARCHIVE"));
        };
        let from = format!("{root}/{original}");
        if name == "native-dir" && !flag_lines.iter().any(|line| line.contains(&from)) {
            continue;
        }
        let file = std::fs::File::open(archive_path)
            .map_err(|e| format!("opening {archive_path}: {e}"))?;
        archive::unpack(&mut BufReader::new(file), Path::new(dir))
            .map_err(|e| format!("unpacking {archive_path}: {e}"))?;
        if name == "out-dir" {
            command.env("OUT_DIR", Path::new(&root).join(dir));
        }
        moved.push((from, format!("{root}/{dir}")));
    }
    let relocate = |line: String| {
        moved
            .iter()
            .fold(line, |line, (from, to)| line.replace(from, to))
    };
    let mut extra = Vec::new();
    for (name, value) in &opts {
        match name.as_str() {
            "env-file" => {
                for line in read_lines(value, &root)? {
                    let line = relocate(line);
                    let (k, v) = line
                        .split_once('=')
                        .ok_or_else(|| format!("bad line `{line}` in {value}"))?;
                    command.env(k, v);
                }
            }
            "flags-file" => extra.extend(read_lines(value, &root)?.into_iter().map(relocate)),
            "link-args-file" => {
                // FOR=FILE: the `scope<TAB>arg` lines whose scope applies to FOR.
                let split = match value.strip_prefix("test=") {
                    Some(path) => Some(("test".to_string(), path)),
                    None => value.strip_prefix("bin=").and_then(|rest| {
                        rest.split_once('=')
                            .map(|(name, path)| (format!("bin={name}"), path))
                    }),
                };
                let (target, path) = split
                    .ok_or_else(|| format!("`--link-args-file` takes FOR=FILE, got `{value}`"))?;
                let target = target.as_str();
                for line in read_lines(path, &root)? {
                    let (scope, arg) = line
                        .split_once('\t')
                        .ok_or_else(|| format!("bad line `{line}` in {path}"))?;
                    if directives::link_arg_applies(scope, target) {
                        extra.push(relocate(arg.to_string()));
                    }
                }
            }
            "out-dir" | "native-dir" => {}
            other => return Err(format!("unknown option `--{other}`")),
        }
    }
    command
        .args(rest.iter().map(|a| a.replace(PWD, &root)))
        .args(extra)
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("running {program}: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let mut out = std::io::stderr();
    for line in BufReader::new(stderr).lines() {
        let line = line.map_err(|e| format!("reading rustc's output: {e}"))?;
        if line.starts_with("{\"$message_type\":\"diagnostic\"") {
            if let Some(text) = json_string_field(&line, "rendered") {
                let _ = out.write_all(text.as_bytes());
            }
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    let status = child.wait().map_err(|e| format!("waiting for rustc: {e}"))?;
    Ok(status.code().map(|c| c as u8).unwrap_or(1))
}

/// The value of string field `name` in a one-line JSON object, unescaped.
fn json_string_field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let mut chars = line[start..].chars();
    let mut text = String::new();
    let mut pending_high: Option<u32> = None;
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(text),
            '\\' => match chars.next()? {
                'n' => text.push('\n'),
                't' => text.push('\t'),
                'r' => text.push('\r'),
                'b' => text.push('\u{8}'),
                'f' => text.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let unit = u32::from_str_radix(&hex, 16).ok()?;
                    if (0xD800..0xDC00).contains(&unit) {
                        pending_high = Some(unit);
                        continue;
                    }
                    let code = match pending_high.take() {
                        Some(high) => 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00),
                        None => unit,
                    };
                    text.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                other => text.push(other),
            },
            c => text.push(c),
        }
    }
    None
}

struct ScriptPaths {
    script: PathBuf,
    manifest_dir: PathBuf,
    out_dir: PathBuf,
}

fn run_build_script(args: &[String]) -> Result<u8, String> {
    let root = exec_root()?;
    let (opts, _) = options(args)?;
    let get = |name: &str| -> Result<&str, String> {
        opts.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("missing `--{name}`"))
    };
    let abs = |p: &str| Path::new(&root).join(p);
    let paths = ScriptPaths {
        script: abs(get("script")?),
        manifest_dir: abs(get("manifest-dir")?),
        out_dir: abs(get("out-dir")?),
    };
    std::fs::create_dir_all(&paths.out_dir).map_err(|e| format!("creating OUT_DIR: {e}"))?;
    let mut command = Command::new(&paths.script);
    for (name, value) in std::env::vars() {
        if value.contains(PWD) {
            command.env(name, value.replace(PWD, &root));
        }
    }
    // (dependency's OUT_DIR, where this run unpacked it), both absolute.
    let mut moved: Vec<(String, String)> = Vec::new();
    for (name, value) in &opts {
        if name == "dep-env-in" {
            let mut parts = value.splitn(4, '=');
            let (Some(file), Some(original), Some(dir), Some(archive_path)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("`--dep-env-in` takes FILE=ORIGINAL=DIR=ARCHIVE".to_string());
            };
            let lines = read_lines(file, &root)?;
            let (from, to) = (format!("{root}/{original}"), format!("{root}/{dir}"));
            let names_out_dir = lines.iter().any(|l| contains_path(l, &from));
            if names_out_dir {
                let archive = std::fs::File::open(archive_path)
                    .map_err(|e| format!("opening {archive_path}: {e}"))?;
                archive::unpack(&mut BufReader::new(archive), &abs(dir))
                    .map_err(|e| format!("unpacking {archive_path}: {e}"))?;
            }
            for line in lines {
                if let Some((k, v)) = line.split_once('=') {
                    command.env(k, replace_path(v, &from, &to));
                }
            }
            if names_out_dir {
                moved.push((from, to));
            }
        }
    }
    let output = command
        .env("OUT_DIR", &paths.out_dir)
        .env("CARGO_MANIFEST_DIR", &paths.manifest_dir)
        .current_dir(&paths.manifest_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running build script {}: {e}", paths.script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        eprintln!(
            "build script failed ({})\n--- stdout\n{stdout}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        return Ok(1);
    }
    let parsed = directives::parse(&stdout).map_err(|e| format!("build script output {e}"))?;
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    if !parsed.errors.is_empty() {
        for error in &parsed.errors {
            eprintln!("error: {error}");
        }
        return Ok(1);
    }
    // What the script writes names a dependency's OUT_DIR where cargo would have it.
    let hide = |s: &str| {
        moved
            .iter()
            .fold(s.to_string(), |s, (from, to)| replace_path(&s, to, from))
            .replace(&root, PWD)
    };
    let write = |name: &str, lines: Vec<String>| -> Result<(), String> {
        let path = get(name)?;
        let mut text = String::new();
        for line in lines {
            text.push_str(&hide(&line));
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|e| format!("writing {path}: {e}"))
    };
    write("flags", parsed.crate_flags.clone())?;
    write("link-search", parsed.link_search.clone())?;
    write(
        "link-args",
        parsed
            .link_args
            .iter()
            .map(|(scope, arg)| format!("{scope}\t{arg}"))
            .collect(),
    )?;
    write(
        "env",
        parsed.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    )?;
    let links = opts
        .iter()
        .find(|(n, _)| n == "links")
        .map(|(_, v)| v.as_str());
    let dep_env = match links {
        Some(links) if !links.is_empty() => parsed
            .metadata
            .iter()
            .map(|(k, v)| format!("{}={v}", directives::dep_var(links, k)))
            .collect(),
        _ => Vec::new(),
    };
    write("dep-env", dep_env)?;
    let archive_path = get("out-archive")?;
    let mut file =
        std::fs::File::create(archive_path).map_err(|e| format!("creating {archive_path}: {e}"))?;
    archive::pack(&paths.out_dir, &mut file).map_err(|e| format!("packing OUT_DIR: {e}"))?;
    Ok(0)
}
