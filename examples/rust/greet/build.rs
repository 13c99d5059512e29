//! Tells the crate about its build the way cargo build scripts do: a cfg, an environment variable
//! and a generated source file in OUT_DIR.

use std::io::Write;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(greet_build_info)");
    println!("cargo::rustc-cfg=greet_build_info");
    let profile = std::env::var("PROFILE").expect("cargo sets PROFILE");
    println!("cargo::rustc-env=GREET_PROFILE={profile}");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let words = std::fs::read_to_string(format!("{manifest_dir}/languages.txt"))
        .expect("languages.txt next to Cargo.toml");
    let mut file = std::fs::File::create(format!("{out_dir}/languages.rs")).expect("create");
    writeln!(file, "/// Languages greet knows, one per line of languages.txt.").unwrap();
    writeln!(file, "pub const LANGUAGES: &[(&str, &str)] = &[").unwrap();
    for line in words.lines().filter(|l| !l.trim().is_empty()) {
        let (language, hello) = line.split_once('=').expect("language=greeting");
        writeln!(file, "    ({:?}, {:?}),", language.trim(), hello.trim()).unwrap();
    }
    writeln!(file, "];").unwrap();
    println!("cargo::rerun-if-changed=languages.txt");
}
