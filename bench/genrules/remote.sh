#!/usr/bin/env bash
# Remote-cache benchmark: the core genrule workspace (bench/genrules/generate.py, 1,000 genrules)
# built from an EMPTY local cache with every action a remote cache hit. NOT part of CI.
#
# Usage:
#     bench/genrules/remote.sh                       # kiln serve if this kiln has it, else bazel-remote
#     SERVER=bazel-remote bench/genrules/remote.sh   # force bazel-remote (binary from $BAZEL_REMOTE or PATH)
#     RUNS=10 KILN_BIN=/path/to/kiln bench/genrules/remote.sh
#     NAME=genrules-remote-kiln ...                 # results under another file stem
#
# What it does:
#   1. Starts the server on a loopback port with a temp directory: `kiln serve` (BLAKE3), or
#      bazel-remote (SHA-256 only, so Kiln builds with --digest_function=sha256).
#   2. Populates it: one `kiln build //...` in checkout A with its own local cache.
#   3. Checks that checkout B (another directory, another local cache) builds with 0 executed
#      actions and 1,000 remote hits (from --events).
#   4. ONE hyperfine invocation; each run starts with B's local cache and kiln-out/ deleted:
#        remote-all-toplevel  kiln build //...        (every output is top-level: all downloaded)
#        remote-deep-toplevel kiln build //p99:all    (only p99's 10 outputs downloaded)
#        remote-deep-all      kiln build //p99:all --remote_download_outputs=all (all 1,000)
#        local-clean          kiln build //... with no remote (every action executed), for scale
#      Results: bench/results/genrules-remote.{md,json}, environment: genrules-remote-env.txt.
set -euo pipefail

RUNS="${RUNS:-5}"
WARMUP="${WARMUP:-1}"
JOBS="${JOBS:-2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RESULTS="$REPO/bench/results"
NAME="${NAME:-genrules-remote}"   # results file stem
mkdir -p "$RESULTS"
command -v hyperfine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine; }

if [ -n "${KILN_BIN:-}" ]; then
    KILN="$KILN_BIN"
else
    (cd "$REPO" && cargo build --release -p kiln-cli)
    KILN="$REPO/target/release/kiln"
fi

WORK="$(mktemp -d /tmp/kiln-remote-bench.XXXXXX)"
PORT="${PORT:-19093}"
URL="grpc://127.0.0.1:$PORT"
SERVER="${SERVER:-auto}"
if [ "$SERVER" = auto ]; then
    if "$KILN" serve --help >/dev/null 2>&1; then SERVER=kiln; else SERVER=bazel-remote; fi
fi
DIGEST=""
if [ "$SERVER" = kiln ]; then
    "$KILN" serve --addr "127.0.0.1:$PORT" --dir "$WORK/server" --max-size 10G --allow-anonymous write > "$WORK/server.log" 2>&1 &
else
    BR="${BAZEL_REMOTE:-$(command -v bazel-remote)}"
    "$BR" --dir "$WORK/server" --max_size 10 --grpc_address "127.0.0.1:$PORT" \
        --http_address "127.0.0.1:$((PORT + 1))" > "$WORK/server.log" 2>&1 &
    DIGEST="--digest_function=sha256"
fi
SERVER_PID=$!
cleanup() {
    kill "$SERVER_PID" 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT
sleep 1

A="$WORK/checkout-a"; B="$WORK/checkout-b"; C="$WORK/checkout-clean"
python3 "$HERE/generate.py" "$A"
python3 "$HERE/generate.py" "$B"
python3 "$HERE/generate.py" "$C"
KFLAGS="--jobs $JOBS $DIGEST"

ENV="$RESULTS/$NAME-env.txt"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "kiln: $(git -C "$REPO" rev-parse HEAD) (binary $KILN)"
    echo "server: $SERVER at $URL"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "hyperfine: $(hyperfine --version)"
} > "$ENV"

echo "== populate the remote from checkout A"
(cd "$A" && KILN_CACHE_DIR="$WORK/cache-a" "$KILN" build //... $KFLAGS --remote_cache "$URL" 2>&1 | tail -1) | tee -a "$ENV"
echo "== checkout B from an empty local cache"
(cd "$B" && KILN_CACHE_DIR="$WORK/cache-b" "$KILN" build //... $KFLAGS --remote_cache "$URL" \
    --events "$WORK/events.jsonl" 2>&1 | tail -1) | tee -a "$ENV"
tail -1 "$WORK/events.jsonl" | tee -a "$ENV"
grep -q '"executed":0' "$WORK/events.jsonl" || { echo "checkout B executed actions: not all remote hits" >&2; exit 1; }
cmp "$A/kiln-out/bin/p99/g0.out" "$B/kiln-out/bin/p99/g0.out" && echo "outputs identical (p99/g0.out)" | tee -a "$ENV"

FRESH="rm -rf $WORK/cache-b $B/kiln-out"
RB="cd $B && KILN_CACHE_DIR=$WORK/cache-b $KILN build $KFLAGS --remote_cache $URL"
hyperfine --runs "$RUNS" --warmup "$WARMUP" \
    --export-markdown "$RESULTS/$NAME.md" --export-json "$RESULTS/$NAME.json" \
    -n remote-all-toplevel  --prepare "$FRESH" "$RB //..." \
    -n remote-deep-toplevel --prepare "$FRESH" "$RB //p99:all" \
    -n remote-deep-all      --prepare "$FRESH" "$RB //p99:all --remote_download_outputs=all" \
    -n local-clean --prepare "rm -rf $WORK/cache-c $C/kiln-out" \
        "cd $C && KILN_CACHE_DIR=$WORK/cache-c $KILN build //... $KFLAGS"
cat "$RESULTS/$NAME.md"
