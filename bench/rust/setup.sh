#!/usr/bin/env bash
# Lays out the Rust benchmark workspace in $1 (default /tmp/kiln-bench-rust): tokei 12.1.2, a real
# command-line application (150 packages in its Cargo.lock, 19 direct dependencies, a build script
# that renders code with tera, serde derive, clap 2), taken unchanged from its published crate,
# plus the BUILD.bazel files a rules_rust user would write for it. Registry crates come through
# Kiln's @crates repository from the crate's own Cargo.lock.
set -euo pipefail
work="${1:-/tmp/kiln-bench-rust}"
version=12.1.2
rm -rf "$work"
mkdir -p "$work/fetch"
# cargo fetches the published crate (and verifies it) into its cache; copy its sources out.
cat > "$work/fetch/Cargo.toml" <<TOML
[package]
name = "fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
tokei = "=$version"
TOML
mkdir -p "$work/fetch/src" && echo "" > "$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch -q)
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tokei-$version | head -1)
cp -r "$src" "$work/tokei"
rm -rf "$work/fetch"
cat > "$work/kiln.toml" <<'TOML'
[rust.crates]
manifest = "tokei/Cargo.toml"
TOML
cat > "$work/tokei/BUILD.bazel" <<'BUILD'
load("@rules_rust//rust:defs.bzl", "rust_binary", "rust_library")
load("@rules_rust//cargo:defs.bzl", "cargo_build_script")

DEPS = [
    "@crates//:aho-corasick",
    "@crates//:clap",
    "@crates//:crossbeam-channel",
    "@crates//:dashmap",
    "@crates//:dirs",
    "@crates//:encoding_rs_io",
    "@crates//:env_logger",
    "@crates//:grep-searcher",
    "@crates//:ignore",
    "@crates//:log",
    "@crates//:num-format",
    "@crates//:once_cell",
    "@crates//:parking_lot",
    "@crates//:rayon",
    "@crates//:regex",
    "@crates//:serde",
    "@crates//:serde_json",
    "@crates//:term_size",
    "@crates//:toml",
]

cargo_build_script(
    name = "tokei_bs",
    srcs = ["build.rs"],
    data = ["languages.json"] + glob(["src/**/*.tera.rs"]),
    edition = "2018",
    version = "12.1.2",
    deps = [
        "@crates//:ignore",
        "@crates//:serde_json",
        "@crates//:tera",
    ],
)

rust_library(
    name = "tokei",
    srcs = glob(["src/**/*.rs"], exclude = ["src/main.rs"]),
    crate_root = "src/lib.rs",
    edition = "2018",
    proc_macro_deps = ["@crates//:serde_derive"],
    version = "12.1.2",
    deps = DEPS + [":tokei_bs"],
)

rust_binary(
    name = "tokei_bin",
    srcs = ["src/main.rs", "src/cli.rs", "src/cli_utils.rs", "src/input.rs"],
    crate_name = "tokei",
    crate_root = "src/main.rs",
    edition = "2018",
    version = "12.1.2",
    deps = DEPS + [":tokei"],
)
BUILD
echo "$work"
