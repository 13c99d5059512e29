#!/usr/bin/env bash
# Kiln against cargo on tokei 12.1.2 (see setup.sh), side by side in one hyperfine run per scenario,
# runs interleaved (bench/hyperfine_interleaved.py: each round runs every command once).
# Usage: bench/rust/run.sh [WORKDIR]    env: KILN_BIN (default target/release/kiln), RUNS (3),
# CLEAN_RUNS (3), JOBS (2), SCENARIOS ("clean-dbg clean-opt noop edit": a subset runs only those).
# Writes bench/results/rust-*.{md,json} and rust-env.txt.
#
# Scenarios: clean build `-c dbg` vs `CARGO_INCREMENTAL=0 cargo build`; clean `-c opt` vs
# `cargo build --release`; no-op; one edit in the workspace crate (a comment appended to
# src/stats.rs, which both tools must recompile: lib + binary), with cargo's incremental dev
# build reported beside it. tokei's release profile asks for thin LTO and panic=abort, which
# `-c opt` does not do, so cargo gets CARGO_PROFILE_RELEASE_LTO=false and
# CARGO_PROFILE_RELEASE_PANIC=unwind to do the same work.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work="${1:-/tmp/kiln-bench-rust}"
kiln="${KILN_BIN:-$repo/target/release/kiln}"
runs="${RUNS:-3}"
clean_runs="${CLEAN_RUNS:-3}"
jobs="${JOBS:-2}"
scenarios=" ${SCENARIOS:-clean-dbg clean-opt noop edit} "
reports=" $scenarios "; [[ "$scenarios" == *" noop "* ]] && reports="$scenarios noop-racy "
want() { [[ "$scenarios" == *" $1 "* ]]; }
results="$repo/bench/results"
mkdir -p "$results"

"$here/setup.sh" "$work" >/dev/null
cd "$work"
export KILN_CACHE_DIR="$work/kiln-cache"
export CARGO_INCREMENTAL=0
target="$work/tokei/target"
kbuild="$kiln build --jobs $jobs //tokei:tokei_bin"
cbuild="cargo build --locked --jobs $jobs --manifest-path tokei/Cargo.toml"
# Keeps the verified @crates repository (as cargo keeps its registry sources); drops every
# action result, the workspace state and the outputs.
kclean="rm -rf $KILN_CACHE_DIR/cas $KILN_CACHE_DIR/ac $KILN_CACHE_DIR/ac.sqlite* $KILN_CACHE_DIR/index.sqlite* $KILN_CACHE_DIR/verified.sqlite* $KILN_CACHE_DIR/workspaces $KILN_CACHE_DIR/tmp $work/kiln-out"
cclean="rm -rf $target"
edit="echo \"// edit \$(date +%s%N)\" >> $work/tokei/src/stats.rs"

# Warm both tools' downloads (not measured): cargo's registry cache and Kiln's @crates repository.
$cbuild -q >/dev/null 2>&1 || true
$kbuild >/dev/null 2>&1

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "kiln: $($kiln --version 2>/dev/null || echo unknown) ($kiln), commit $(git -C "$repo" rev-parse --short HEAD)"
  echo "rustc: $(rustc --version)"
  echo "cargo: $(cargo --version)"
  echo "hyperfine: $(hyperfine --version)"
  echo "scenarios measured in this run: $scenarios(raw files of other scenarios are older)"
  echo "nproc: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Cargo.lock packages: $(grep -c '^name = ' tokei/Cargo.lock)"
} > "$results/rust-env.txt"

hf() {
  local name=$1; shift
  "$repo/bench/hyperfine_interleaved.py" --export-markdown "$results/rust-$name.md" --export-json "$results/rust-$name.json" "$@"
}

want clean-dbg && hf clean-dbg --runs "$clean_runs" \
  --prepare "$kclean" -n "kiln -c dbg (clean)" "$kbuild -c dbg" \
  --prepare "$cclean" -n "cargo build (clean)" "$cbuild"

want clean-opt && hf clean-opt --runs "$clean_runs" \
  --prepare "$kclean" -n "kiln -c opt (clean)" "$kbuild -c opt" \
  --prepare "$cclean" -n "cargo build --release (clean)" \
  "CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_PANIC=unwind $cbuild --release"

$kbuild -c dbg >/dev/null 2>&1
$cbuild -q
# A no-op as a user meets it: nothing touched for a few seconds. Kiln's no-op record trusts only
# stats older than the build by 2 s (git's racy-clean rule); within 2 s of the last change (as
# right after setup.sh's copy) a build takes the full path instead, reported as `noop-racy`.
want noop && hf noop-racy --runs "$runs" -n "kiln -c dbg (no-op, files changed < 2 s before)" \
  --prepare "touch $work/tokei/src/stats.rs" "$kbuild -c dbg"
want noop && sleep 3 && hf noop --runs "$runs" --warmup 1 \
  -n "kiln -c dbg (no-op)" "$kbuild -c dbg" \
  -n "cargo build (no-op)" "$cbuild"

want edit && CARGO_INCREMENTAL=1 CARGO_TARGET_DIR="$work/target-incr" $cbuild -q
want edit && hf edit --runs "$runs" --warmup 1 \
  --prepare "$edit" -n "kiln -c dbg (edit)" "$kbuild -c dbg" \
  --prepare "$edit" -n "cargo build (edit, non-incremental)" "$cbuild" \
  --prepare "$edit" -n "cargo build (edit, incremental)" \
  "CARGO_INCREMENTAL=1 CARGO_TARGET_DIR=$work/target-incr $cbuild"

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$results/rust-env.txt"
for s in $reports; do cat "$results/rust-$s.md"; done
# Kiln/cargo per scenario of this run against issue 4's targets (hyperfine's "Relative" column
# compares with the fastest command, which for the edit is cargo's incremental build).
jsons=""
for s in $scenarios; do jsons="$jsons${jsons:+,}$results/rust-$s.json"; done
python3 "$repo/bench/ratios.py" "$results/rust-ratios.md" "$jsons" \
  "clean -c dbg=kiln -c dbg (clean)/cargo build (clean)<=1.15" \
  "clean -c opt=kiln -c opt (clean)/cargo build --release (clean)<=1.15" \
  "no-op=kiln -c dbg (no-op)/cargo build (no-op)<=0.5" \
  "edit=kiln -c dbg (edit)/cargo build (edit, non-incremental)<=1.0"
