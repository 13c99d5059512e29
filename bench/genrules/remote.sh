#!/usr/bin/env bash
# Remote-cache benchmark: the core genrule workspace (bench/genrules/generate.py, 1,000 genrules)
# built from an EMPTY local cache with every action a remote cache hit, against `kiln serve` and
# bazel-remote (default zstd storage and --storage_mode uncompressed) side by side in one
# hyperfine run, SHA-256 everywhere (Kiln builds with --digest_function=sha256). NOT part of CI.
#
# Usage:
#     bench/genrules/remote.sh
#     RUNS=10 KILN_BIN=/path/to/kiln BAZEL_REMOTE=/path/to/bazel-remote bench/genrules/remote.sh
#     NAME=genrules-remote ...                     # results file stem
#
# What it does:
#   1. Starts the three servers on loopback ports, each with a temp directory.
#   2. Populates each: one `kiln build //...` in its own checkout A with its own local cache.
#   3. Checks that its checkout B (another directory, another local cache) builds with 0 executed
#      actions and 1,000 remote hits (from --events), and that the outputs equal A's.
#   4. ONE hyperfine invocation; each run starts with B's local cache and kiln-out/ deleted, for
#      each server S:
#        all-toplevel@S  kiln build //...        (every output is top-level: all downloaded)
#        deep-toplevel@S kiln build //p99:all    (only p99's 10 outputs downloaded)
#        deep-all@S      kiln build //p99:all --remote_download_outputs=all (all 1,000)
#      and local-clean: kiln build //... with no remote (every action executed), for scale.
#      Results: bench/results/$NAME.{md,json}, environment: $NAME-env.txt.
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
BR="${BAZEL_REMOTE:-$(command -v bazel-remote || echo "$(go env GOPATH)/bin/bazel-remote")}"
[ -x "$BR" ] || go install github.com/buchgr/bazel-remote/v2@v2.6.2
SERVERS="kiln bazel-remote-zstd bazel-remote-uncompressed"
PIDS=()
port_of() { case $1 in kiln) echo "$PORT" ;; bazel-remote-zstd) echo $((PORT + 2)) ;; *) echo $((PORT + 4)) ;; esac; }
for S in $SERVERS; do
    P=$(port_of "$S")
    if [ "$S" = kiln ]; then
        "$KILN" serve --addr "127.0.0.1:$P" --dir "$WORK/server-$S" --max-size 10G \
            --allow-anonymous write > "$WORK/$S.log" 2>&1 &
    else
        "$BR" --dir "$WORK/server-$S" --max_size 10 --grpc_address "127.0.0.1:$P" \
            --http_address "127.0.0.1:$((P + 1))" --storage_mode "${S#bazel-remote-}" \
            > "$WORK/$S.log" 2>&1 &
    fi
    PIDS+=($!)
done
cleanup() {
    kill "${PIDS[@]}" 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT
sleep 2

KFLAGS="--jobs $JOBS --digest_function=sha256"
ENV="$RESULTS/$NAME-env.txt"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "kiln: $(git -C "$REPO" rev-parse HEAD) (binary $KILN)"
    echo "bazel-remote: $BR"
    echo "servers: $SERVERS on ports $PORT, $((PORT + 2)), $((PORT + 4)); SHA-256"
    echo "nproc: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "hyperfine: $(hyperfine --version)"
} > "$ENV"

C="$WORK/checkout-clean"
python3 "$HERE/generate.py" "$C"
ARGS=()
for S in $SERVERS; do
    URL="grpc://127.0.0.1:$(port_of "$S")"
    A="$WORK/a-$S"; B="$WORK/b-$S"
    python3 "$HERE/generate.py" "$A"
    python3 "$HERE/generate.py" "$B"
    echo "== $S: populate from checkout A" | tee -a "$ENV"
    (cd "$A" && KILN_CACHE_DIR="$WORK/cache-a-$S" "$KILN" build //... $KFLAGS --remote_cache "$URL" 2>&1 | tail -1) | tee -a "$ENV"
    echo "== $S: checkout B from an empty local cache" | tee -a "$ENV"
    (cd "$B" && KILN_CACHE_DIR="$WORK/cache-b-$S" "$KILN" build //... $KFLAGS --remote_cache "$URL" \
        --events "$WORK/events-$S.jsonl" 2>&1 | tail -1) | tee -a "$ENV"
    python3 - "$WORK/events-$S.jsonl" <<'PY' | tee -a "$ENV"
import json, sys
summary = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
hits, executed = summary.get("remote_hits"), summary.get("executed")
print(f"summary: executed={executed} remote_hits={hits}")
if executed != 0 or hits != 1000:
    sys.exit("checkout B did not take all 1,000 actions from the remote")
PY
    if ! cmp "$A/kiln-out/bin/p99/g0.out" "$B/kiln-out/bin/p99/g0.out"; then
        echo "outputs differ between checkouts A and B" >&2
        exit 1
    fi
    echo "outputs identical (p99/g0.out)" | tee -a "$ENV"
    FRESH="rm -rf $WORK/cache-b-$S $B/kiln-out"
    RB="cd $B && KILN_CACHE_DIR=$WORK/cache-b-$S $KILN build $KFLAGS --remote_cache $URL"
    ARGS+=(-n "all-toplevel@$S" --prepare "$FRESH" "$RB //...")
    ARGS+=(-n "deep-toplevel@$S" --prepare "$FRESH" "$RB //p99:all")
    ARGS+=(-n "deep-all@$S" --prepare "$FRESH" "$RB //p99:all --remote_download_outputs=all")
done

hyperfine --runs "$RUNS" --warmup "$WARMUP" \
    --export-markdown "$RESULTS/$NAME.md" --export-json "$RESULTS/$NAME.json" \
    "${ARGS[@]}" \
    -n local-clean --prepare "rm -rf $WORK/cache-c $C/kiln-out" \
        "cd $C && KILN_CACHE_DIR=$WORK/cache-c $KILN build //... $KFLAGS"
cat "$RESULTS/$NAME.md"
