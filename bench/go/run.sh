#!/usr/bin/env bash
# Go benchmark: Kiln vs `go build` on a generated module of 500 packages and 10 commands
# (bench/go/generate.py). NOT part of CI.
#
# Usage:
#     bench/go/run.sh                    # RUNS=5 timed runs (clean: CLEAN_RUNS=3) + 1 warmup
#     KILN_BIN=/path/to/kiln bench/go/run.sh
#     N=200 bench/go/run.sh              # fewer packages
#     UNITS=0 bench/go/run.sh            # 20-line packages (default 6: ~270 lines, see generate.py)
#     TMPDIR=/var/tmp bench/go/run.sh    # temp dir there instead of /tmp (see docs/benchmarks.md)
#
# One hyperfine invocation, both tools with CGO_ENABLED=0, `go build -o DIR ./...` so that both link
# every binary, Kiln with `--jobs $(nproc)` (go build uses GOMAXPROCS = nproc):
#   kiln-clean / go-clean   empty KILN_CACHE_DIR (and kiln-out/) / empty GOCACHE (and DIR); the
#                           standard library is compiled by both
#   kiln-noop  / go-noop    nothing changed since the last build
#   kiln-body  / go-body    the body of p000.Base (//go:noinline; p000 is imported by every package
#                           of layer 1, and transitively by all 450 above) changed before each run
# Results: bench/results/go.{md,json}; environment: bench/results/go-env.txt.
# `go build -ldflags="-s -w"`: Kiln's default `-c fastbuild` links stripped binaries (as rules_go
# does with Bazel's --strip=sometimes), so `go build` is asked to do the same linker work.
set -euo pipefail

RUNS="${RUNS:-5}"
CLEAN_RUNS="${CLEAN_RUNS:-3}"
N="${N:-500}"
# Generated record types per package (bench/go/generate.py): 6 makes the median package of
# golang.org/x/tools; 0 the 20-line packages of the first ten sessions.
export UNITS="${UNITS:-6}"
JOBS="$(nproc)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RESULTS="$REPO/bench/results"
# shellcheck source=bench/go/common.sh
. "$HERE/common.sh"
KILN="$(kiln_binary)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/kiln-go-bench.XXXXXX")"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
python3 "$HERE/generate.py" "$TMP/kiln" "$N"
python3 "$HERE/generate.py" "$TMP/go" "$N"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
KC="$TMP/kiln-cache"
GC="$TMP/gocache"
BIN="$TMP/bin"
kiln_cmd="cd $TMP/kiln && KILN_CACHE_DIR=$KC $KILN build //... --jobs $JOBS"
go_cmd="cd $TMP/go && GOCACHE=$GC go build -ldflags=\"-s -w\" -o $BIN/ ./..."
edit() { echo "sed -i \"s/return x \\* [0-9]* \\/\\/ body/return x * \$(date +%N | sed 's/^0*//;s/^\$/1/') \\/\\/ body/\" $1/lib/p000/p000.go"; }

# Warm both for the no-op and body scenarios.
bash -c "$kiln_cmd" >/dev/null 2>&1
bash -c "$go_cmd"

compare go "rm -rf $KC $TMP/kiln/kiln-out"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "kiln: $($KILN --version 2>/dev/null || echo "$KILN") at $(git -C "$REPO" rev-parse HEAD)"
    echo "go: $(go version)"
    echo "hyperfine: $(hyperfine --version)"
    echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "kernel: $(uname -r)"
    echo "packages: $N + 10 commands, UNITS=$UNITS ($(cat "$TMP/go/lib/p001/"*.go | wc -l) lines in lib/p001)"
    echo "kiln sandbox: $(cd "$TMP/kiln" && KILN_CACHE_DIR=$KC $KILN info 2>/dev/null | grep -i sandbox || true)"
} > "$RESULTS/go-env.txt"
cat "$RESULTS/go-incremental.md" "$RESULTS/go-clean.md" "$RESULTS/go-env.txt"
