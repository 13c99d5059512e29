#!/usr/bin/env bash
# Remote-cache benchmark: `kiln serve` side by side with bazel-remote (default zstd storage and
# `--storage_mode uncompressed`), SHA-256 on both, driven by the same load generator
# (bench/remote/loadgen). Measures CAS write/read throughput for 4 KiB and 16 MiB blobs, ActionCache
# Get rate, each with 1 and 32 concurrent clients, and start-up time on a cache of 100,000 blobs.
#
# Usage: bench/remote/run.sh            (from the repository root)
#   SECONDS_PER_RUN=5 REPEATS=3           each measurement runs this long, this many times
#   SPECS="read4k:1 acget:32"            only these rows (op:clients; default all ten)
#                                         (servers interleaved); the table gives medians
#   KILN_BIN=path/to/kiln                 default target/release/kiln; when it does not exist,
#                                         loadgen's `serve` binary (the same kiln_remote::server)
#   BAZEL_REMOTE_BIN=path/to/bazel-remote default $(go env GOPATH)/bin/bazel-remote, installed if absent
#   BAZEL_REMOTE_VERSION=v2.6.2 STARTUP_BLOBS=100000 OUT=bench/results/remote LOADGEN= SERVE_BIN=
#   STARTUP_BLOBS=0 skips the start-up measurement (it fills each cache, which takes minutes).
# Writes $OUT.jsonl (one line per measurement) and $OUT.md (a table).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KILN_BIN=${KILN_BIN:-$ROOT/target/release/kiln}
BAZEL_REMOTE_VERSION=${BAZEL_REMOTE_VERSION:-v2.6.2}
BAZEL_REMOTE_BIN=${BAZEL_REMOTE_BIN:-$(go env GOPATH)/bin/bazel-remote}
STARTUP_BLOBS=${STARTUP_BLOBS:-100000}
OUT=${OUT:-$ROOT/bench/results/remote}
WORK=$(mktemp -d /tmp/kiln-remote-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ ! -x "$BAZEL_REMOTE_BIN" ]; then
  # `go install module@version`; if the proxy refuses the version-list lookup that go install
  # makes, build the same version from a scratch module instead.
  if ! go install "github.com/buchgr/bazel-remote/v2@$BAZEL_REMOTE_VERSION"; then
    mkdir -p "$WORK/br" && cd "$WORK/br"
    go mod init br >/dev/null 2>&1
    printf '//go:build tools\npackage tools\nimport _ "github.com/buchgr/bazel-remote/v2"\n' > tools.go
    go get "github.com/buchgr/bazel-remote/v2@$BAZEL_REMOTE_VERSION"
    go build -o "$BAZEL_REMOTE_BIN" github.com/buchgr/bazel-remote/v2
    cd "$ROOT"
  fi
fi
LOADGEN=${LOADGEN:-$ROOT/bench/remote/loadgen/target/release/kiln-remote-loadgen}
SERVE_BIN=${SERVE_BIN:-$ROOT/bench/remote/loadgen/target/release/serve}
[ -x "$LOADGEN" ] || (cd bench/remote/loadgen && cargo build --release -q --bin kiln-remote-loadgen)
[ -x "$KILN_BIN" ] || [ -x "$SERVE_BIN" ] || (cd bench/remote/loadgen && cargo build --release -q --bin serve)

PORT=19092
HTTP_PORT=19080
ADDR=127.0.0.1:$PORT
PID=

start() { # name dir
  case $1 in
    kiln) if [ -x "$KILN_BIN" ]; then
            RUST_LOG=warn "$KILN_BIN" serve --addr "$ADDR" --dir "$2" --max-size 50G \
              --allow-anonymous write 2>>"$WORK/$1.log" &
          else
            # The mimalloc option kiln sets at start-up (cli/src/allocator.rs).
            MIMALLOC_ARENA_EAGER_COMMIT=0 "$SERVE_BIN" "$ADDR" "$2" $((50 << 30)) 2>>"$WORK/$1.log" &
          fi ;;
    bazel-remote-zstd|bazel-remote-uncompressed)
      "$BAZEL_REMOTE_BIN" --dir "$2" --max_size 50 --grpc_address "$ADDR" \
        --http_address "127.0.0.1:$HTTP_PORT" --storage_mode "${1#bazel-remote-}" \
        >>"$WORK/$1.log" 2>&1 & ;;
  esac
  PID=$!
  "$LOADGEN" ready "$ADDR" 600
}

stop() { kill -TERM "$PID"; wait "$PID" || true; }

: > "$OUT.jsonl"
SERVERS=${SERVERS:-"kiln bazel-remote-zstd bazel-remote-uncompressed"}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
# Measurements as op:clients; a subset re-measures only those rows.
SPECS=${SPECS:-"write4k:1 write4k:32 read4k:1 read4k:32 acget:1 acget:32 write16m:1 write16m:32 read16m:1 read16m:32"}
REPEATS=${REPEATS:-3}
# Repetitions interleave the servers (kiln, zstd, uncompressed, kiln, ...) so drift in the
# machine's load spreads over all of them; each repetition starts from an empty cache.
for rep in $(seq 1 "$REPEATS"); do
  for server in $SERVERS; do
    dir=$WORK/$server-cache
    rm -rf "$dir"; mkdir -p "$dir"
    start "$server" "$dir"
    seed=$((rep * 100))
    for spec in $SPECS; do
      set -- ${spec/:/ }
      seed=$((seed + 1))
      # Each measurement starts with no dirty pages left by the one before: otherwise writes
      # pay for the previous writer's writeback, whichever server wrote it.
      sync; sleep 1
      line=$("$LOADGEN" run "$ADDR" "$1" "$2" "$SECONDS_PER_RUN" "$seed")
      echo "{\"server\":\"$server\",\"rep\":$rep,${line#\{}" | tee -a "$OUT.jsonl"
    done
    stop
    rm -rf "$dir"
  done
done

# Start-up on a cache of $STARTUP_BLOBS blobs: fill, stop, then time three restarts until the
# first FindMissingBlobs answer.
for server in $( [ "$STARTUP_BLOBS" -gt 0 ] && echo $SERVERS ); do
  dir=$WORK/$server-startup
  rm -rf "$dir"; mkdir -p "$dir"
  start "$server" "$dir"
  "$LOADGEN" fill "$ADDR" "$STARTUP_BLOBS" 99
  stop
  for run in 1 2 3; do
    # Cold start when the page cache can be dropped (root); the record says which it was.
    if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then cold=true; else cold=false; fi
    t0=$(date +%s.%N)
    start "$server" "$dir"
    t1=$(date +%s.%N)
    stop
    echo "{\"server\":\"$server\",\"op\":\"startup\",\"blobs\":$STARTUP_BLOBS,\"run\":$run,\"page_cache_dropped\":$cold,\"seconds\":$(printf "%.3f" "$(echo "$t1 - $t0" | bc)")}" | tee -a "$OUT.jsonl"
  done
  rm -rf "$dir"
done

python3 - "$OUT.jsonl" "$SECONDS_PER_RUN" > "$OUT.md" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
servers = ["kiln", "bazel-remote-zstd", "bazel-remote-uncompressed"]
by = collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows:
    if r["op"] != "startup":
        by[(r["op"], r["clients"])][r["server"]].append(r)
def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None
print("Median of the repetitions (each %s s after a 1 s warm-up); the range of the repetitions in brackets." % sys.argv[2])
print()
print("| operation | clients | " + " | ".join(servers) + " | kiln / bazel-remote (zstd, uncompressed) | loadgen cores (kiln, zstd, uncompr.) |")
print("|---|---|" + "---|" * len(servers) + "---|---|")
for (op, clients), per in by.items():
    unit = "mib_per_sec" if op.endswith("16m") else "ops_per_sec"
    label = "MiB/s" if unit == "mib_per_sec" else "ops/s"
    vals = [median([r[unit] for r in per.get(s, [])]) for s in servers]
    spans = [(min(r[unit] for r in per[s]), max(r[unit] for r in per[s])) if per.get(s) else None for s in servers]
    ratios = ", ".join(f"{vals[0] / v:.2f}x" if v and vals[0] else "-" for v in vals[1:])
    cores = ", ".join(f"{median([r['loadgen_cores'] for r in per[s]]):.2f}" for s in servers if per.get(s))
    cells = [f"{v:.1f} {label} [{lo:.0f}-{hi:.0f}]" if v else "-" for v, (lo, hi) in ((v, sp or (0, 0)) for v, sp in zip(vals, spans))]
    print(f"| {op} | {clients} | " + " | ".join(cells) + f" | {ratios} | {cores} |")
print()
print("| start-up, %s blobs | " % rows[-1].get("blobs", "?") + " | ".join(servers) + " |")
print("|---|" + "---|" * len(servers))
med = []
for s in servers:
    ts = sorted(r["seconds"] for r in rows if r["op"] == "startup" and r["server"] == s)
    med.append(f"{ts[len(ts)//2]:.3f} s (runs: {', '.join(f'{t:.3f}' for t in ts)})" if ts else "-")
print("| median of 3 | " + " | ".join(med) + " |")
cold = {r.get("page_cache_dropped") for r in rows if r["op"] == "startup"}
if cold:
    print()
    print("Page cache dropped before each start-up: " + ("yes" if cold == {True} else "no" if cold == {False} else "not always"))
PY
cat "$OUT.md"
