#!/usr/bin/env bash
# Go benchmark on a real module: Kiln vs `go build` on golang.org/x/tools (pinned version), all
# of its packages (~220) and its 46 commands. NOT part of CI.
#
# Why x/tools: a widely used module with many packages and commands, pure Go (builds with
# CGO_ENABLED=0), third-party dependencies (go-cmp, goldmark, x/mod, x/net, x/sync, x/sys,
# x/telemetry), and a deep import graph under go/ast/inspector, go/types/typeutil and internal/.
#
# Usage:
#     bench/go/real.sh                      # RUNS=8 timed rounds (clean: CLEAN_RUNS=2) + 1 warmup
#     KILN_BIN=/path/to/kiln bench/go/real.sh
#
# The module is taken from the Go module proxy (`go mod download`), copied twice (one copy for
# each tool), and given rules_go BUILD files by bench/go/golist_build.py for Kiln. Both tools run
# with CGO_ENABLED=0 and modules already downloaded: `go build` keeps its GOMODCACHE, Kiln its
# module repositories (`$KILN_CACHE_DIR/go`); a clean build empties GOCACHE / Kiln's CAS, action
# cache and workspace state. `go build -o DIR ./...` links every command; Kiln builds `//...`.
# Scenarios: clean, no-op, and two body edits of a non-inlinable function in
# internal/typesinternal (imported, directly or not, by most analysis packages and commands): one
# no command calls (the relinked binaries keep their bytes) and one every importer runs.
# Results: bench/results/go-real-{incremental,clean}.{md,json}, bench/results/go-real-env.txt.
# `go build -ldflags="-s -w"`: Kiln's default `-c fastbuild` links stripped binaries (as rules_go
# does with Bazel's --strip=sometimes), so `go build` is asked to do the same linker work.
set -euo pipefail

RUNS="${RUNS:-8}"
CLEAN_RUNS="${CLEAN_RUNS:-2}"
MODULE="golang.org/x/tools"
VERSION="${VERSION:-v0.52.0}"
JOBS="$(nproc)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RESULTS="$REPO/bench/results"
# shellcheck source=bench/go/common.sh
. "$HERE/common.sh"
KILN="$(kiln_binary)"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
TMP="$(mktemp -d "${TMPDIR:-/tmp}/kiln-go-real.XXXXXX")"
trap '[ -n "${KEEP:-}" ] || { chmod -R u+w "$TMP" 2>/dev/null; rm -rf "$TMP"; }' EXIT
SRC="$(GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
for side in kiln go; do
    cp -r "$SRC" "$TMP/$side"
    chmod -R u+w "$TMP/$side"
    (cd "$TMP/$side" && go mod download)
done
: > "$TMP/kiln/kiln.toml"
python3 "$HERE/golist_build.py" "$TMP/kiln"

KC="$TMP/kiln-cache"
GC="$TMP/gocache"
BIN="$TMP/bin"
kiln_cmd="cd $TMP/kiln && KILN_CACHE_DIR=$KC $KILN build //... --jobs $JOBS"
go_cmd="cd $TMP/go && GOCACHE=$GC go build -ldflags=\"-s -w\" -o $BIN/ ./..."
# The edit: the body of a //go:noinline function in a file added to internal/typesinternal. No
# command calls it, so every relinked binary comes out with the bytes it had.
edit() { echo "printf 'package typesinternal\n\n//go:noinline\nfunc kilnBenchEdit() int { return %s }\n' \$(date +%N | sed 's/^0*//;s/^\$/1/') > $1/internal/typesinternal/kiln_bench_edit.go"; }
# The second edit: the same, of a function the package's initialization calls, so every command
# that imports the package runs it and its binary's bytes change: each one is stored again.
edit_called() { echo "printf 'package typesinternal\n\nvar kilnBenchSink = kilnBenchCalled()\n\n//go:noinline\nfunc kilnBenchCalled() int { return %s }\n' \$(date +%N | sed 's/^0*//;s/^\$/1/') > $1/internal/typesinternal/kiln_bench_called.go"; }

# Warm both (and create the edited files once, so the edits only change a body).
for side in kiln go; do
    bash -c "$(edit "$TMP/$side")"
    bash -c "$(edit_called "$TMP/$side")"
done
python3 "$HERE/golist_build.py" "$TMP/kiln"
bash -c "$kiln_cmd" >/dev/null 2>&1 || bash -c "$kiln_cmd"
bash -c "$go_cmd"

compare go-real "rm -rf $KC/cas $KC/ac $KC/ac.sqlite* $KC/index.sqlite* $KC/verified.sqlite* $KC/workspaces $TMP/kiln/kiln-out"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "kiln: $KILN at $(git -C "$REPO" rev-parse HEAD)"
    echo "go: $(go version)"
    echo "module: $MODULE@$VERSION ($(cd "$TMP/go" && go list ./... | wc -l) packages, $(cd "$TMP/go" && go list -f '{{if eq .Name "main"}}x{{end}}' ./... | grep -c x) commands)"
    echo "hyperfine: $(hyperfine --version)"
    echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RESULTS/go-real-env.txt"
cat "$RESULTS/go-real-incremental.md" "$RESULTS/go-real-clean.md" "$RESULTS/go-real-env.txt"
