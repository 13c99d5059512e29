#!/usr/bin/env bash
# Core whole-build benchmark: Kiln vs Bazel on 1,000 genrules in 100 packages, chained 100 deep.
#
# Usage (from anywhere; needs root for apt-get if tools are missing; NOT part of CI):
#     bench/genrules/run.sh                 # 5 timed runs + 1 warmup per scenario
#     RUNS=10 bench/genrules/run.sh         # more runs
#     KEEP=1 bench/genrules/run.sh          # keep the temp dir (workspaces, caches, Bazel output root)
#     TMPDIR=/var/tmp bench/genrules/run.sh # put the temp dir there (default /tmp): file creation
#                                           # on a churned ext4 directory is slow (docs/benchmarks.md)
#     KILN_BIN=/path/to/kiln bench/genrules/run.sh   # skip the cargo build, use this binary
#     KILN_REV=HEAD bench/genrules/run.sh   # build that commit from a `git archive` snapshot in /tmp
#                                           # (target dir /tmp/kiln-bench-target), not the work tree
#
# What it does:
#   1. apt-get installs bazel-bootstrap (Debian's Bazel 4.2.3), hyperfine and time if missing.
#   2. cargo build --release -p kiln-cli.
#   3. Generates the workspace (bench/genrules/generate.py) twice into a temp dir: one copy for
#      Kiln, one for Bazel (so neither tool walks the other's output symlinks/dirs).
#   4. ONE interleaved hyperfine run (bench/hyperfine_interleaved.py: every round runs each of
#      the six commands once, through hyperfine, with its --prepare):
#        kiln-noop    fresh `kiln build //...` process after a warm build (warm cache dir)
#        bazel-noop   `bazel build //...` with a warm server after a warm build
#        kiln-clean   empty KILN_CACHE_DIR and no kiln-out/ before each run
#        bazel-clean  `bazel clean` (server kept) before each run
#        kiln-leaf    p0/s0.txt content changed before each run (100 dependent actions rerun)
#        bazel-leaf   same for Bazel's copy
#      Results: bench/results/genrules.{md,json}.
#   5. Kiln peak RSS for a clean build and a no-op with /usr/bin/time -v, Bazel server RSS,
#      versions and machine facts: bench/results/genrules-env.txt.
#
# Both tools run with --jobs 2 (= nproc on the reference machine). Bazel: startup option
# --output_user_root=<tmp>, `--disk_cache=` (empty), no remote cache, default spawn strategy
# (linux-sandbox when it works; the "processes:" line in genrules-env.txt says which ran), and
# --nosandbox_debug to undo Debian's /etc/bazel/bazelrc which turns --sandbox_debug on, and
# --sandbox_base=/dev/shm (sandboxes on tmpfs, as Kiln's scratch is when it fits), the setting
# Bazel's own docs suggest for sandboxing speed.
# Kiln: default sandbox; the script stops if `kiln info` does not say `sandbox: namespaces`, so
# Kiln never runs with less isolation than Bazel's linux-sandbox.
set -euo pipefail

RUNS="${RUNS:-5}"
WARMUP="${WARMUP:-1}"
JOBS="${JOBS:-2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RESULTS="$REPO/bench/results"
mkdir -p "$RESULTS"

need=()
command -v bazel >/dev/null || need+=(bazel-bootstrap)
command -v hyperfine >/dev/null || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

KILN_COMMIT="$(git -C "$REPO" rev-parse HEAD) (work tree, may have uncommitted changes)"
if [ -n "${KILN_BIN:-}" ]; then
    KILN="$KILN_BIN"
    # A prebuilt binary does not know its commit: record the work tree's, and the binary's date.
    KILN_COMMIT="prebuilt $KILN_BIN (built $(date -u -r "$KILN_BIN" +%FT%TZ); work tree then at $(git -C "$REPO" rev-parse --short HEAD))"
elif [ -n "${KILN_REV:-}" ]; then
    KILN_COMMIT="$(git -C "$REPO" rev-parse "$KILN_REV")"
    SRC="/tmp/kiln-bench-src-$KILN_COMMIT"
    if [ ! -d "$SRC" ]; then
        mkdir -p "$SRC.tmp" && git -C "$REPO" archive "$KILN_COMMIT" | tar -x -C "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
    fi
    (cd "$SRC" && CARGO_TARGET_DIR=/tmp/kiln-bench-target cargo build --release -p kiln-cli)
    KILN=/tmp/kiln-bench-target/release/kiln
else
    (cd "$REPO" && cargo build --release -p kiln-cli)
    KILN="$REPO/target/release/kiln"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")"
BZROOT="$WORK/bazel-root"
KWS="$WORK/kiln-ws"            # Kiln: no-op and leaf change (warm cache $KCACHE)
KWS_CLEAN="$WORK/kiln-ws-clean" # Kiln: clean builds (cache $KCACHE_CLEAN, wiped per run)
BWS="$WORK/bazel-ws"
KCACHE="$WORK/kiln-cache"
KCACHE_CLEAN="$WORK/kiln-cache-clean"
python3 "$HERE/generate.py" "$KWS"
python3 "$HERE/generate.py" "$KWS_CLEAN"
python3 "$HERE/generate.py" "$BWS"

BAZEL="bazel --output_user_root=$BZROOT"
BFLAGS="--jobs=$JOBS --disk_cache= --nosandbox_debug --sandbox_base=/dev/shm"
KFLAGS="--jobs $JOBS"

cleanup() {
    (cd "$BWS" && $BAZEL shutdown >/dev/null 2>&1) || true
    if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

ENV="$RESULTS/genrules-env.txt"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "kiln: $KILN_COMMIT"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel: $(uname -r)"
    echo "mem: $(free -m | awk '/Mem:/{print $2" MiB"}')"
    echo "bazel package: $(dpkg-query -W -f '${Package} ${Version}' bazel-bootstrap 2>/dev/null || echo '?')"
    echo "hyperfine: $(hyperfine --version)"
    echo "java: $(java -version 2>&1 | head -1)"
    echo "--- kiln info"
    (cd "$KWS" && KILN_CACHE_DIR="$KCACHE" "$KILN" info)
} > "$ENV"
cat "$ENV"
if ! grep -q "^sandbox: namespaces" "$ENV"; then
    echo "Kiln would not run its namespace sandbox here (see 'kiln info' above): not comparable" >&2
    exit 1
fi

# Warm builds (also check both tools build the workspace at all, showing errors if not).
echo "== warm-up builds"
(cd "$KWS" && KILN_CACHE_DIR="$KCACHE" "$KILN" build //... $KFLAGS)
(cd "$BWS" && $BAZEL build //... $BFLAGS 2>&1 | tail -3) | tee -a "$ENV"
{
    echo "--- bazel info release / server"
    (cd "$BWS" && $BAZEL info release 2>/dev/null)
    (cd "$BWS" && $BAZEL version 2>/dev/null | head -3) || true
} >> "$ENV"
# Sanity: both tools produce the same bytes for the deepest output.
cmp "$KWS/kiln-out/bin/p99/g0.out" "$BWS/bazel-bin/p99/g0.out" && echo "outputs identical (p99/g0.out)" | tee -a "$ENV"

K="cd $KWS && KILN_CACHE_DIR=$KCACHE $KILN build //... $KFLAGS"
KC="cd $KWS_CLEAN && KILN_CACHE_DIR=$KCACHE_CLEAN $KILN build //... $KFLAGS"
B="cd $BWS && $BAZEL build //... $BFLAGS"

echo "== hyperfine ($RUNS runs, $WARMUP warmup)"
"$HERE/../hyperfine_interleaved.py" --runs "$RUNS" --warmup "$WARMUP" \
    --export-markdown "$RESULTS/genrules.md" --export-json "$RESULTS/genrules.json" \
    -n kiln-noop   --prepare "true" "$K" \
    -n bazel-noop  --prepare "true" "$B" \
    -n kiln-clean  --prepare "rm -rf $KCACHE_CLEAN $KWS_CLEAN/kiln-out" "$KC" \
    -n bazel-clean --prepare "cd $BWS && $BAZEL clean" "$B" \
    -n kiln-leaf   --prepare "echo leaf \$(date +%s%N) >> $KWS/p0/s0.txt" "$K" \
    -n bazel-leaf  --prepare "echo leaf \$(date +%s%N) >> $BWS/p0/s0.txt" "$B"

# Bazel: which spawn strategy actually ran (from a leaf-change build's summary line). The rounds
# rotate, so the last one may have ended with `bazel clean`'s build: bring the workspace up to
# date first, so that the summary is of a 100-action leaf change.
(cd "$BWS" && $BAZEL build //... $BFLAGS >/dev/null 2>&1)
echo "leaf $(date +%s%N)" >> "$BWS/p0/s0.txt"
echo "--- bazel leaf-change summary" >> "$ENV"
(cd "$BWS" && $BAZEL build //... $BFLAGS 2>&1 | grep -E 'processes|Elapsed') >> "$ENV"
BPID="$(cd "$BWS" && $BAZEL info server_pid 2>/dev/null)"
echo "bazel server RSS: $(awk '/VmRSS|VmHWM/{printf "%s %s %s; ", $1, $2, $3}' /proc/$BPID/status)" >> "$ENV"

# Kiln peak RSS.
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/{print $2" KiB"} /Elapsed \(wall/{print "wall "$2}' | paste -sd' '; }
rm -rf "$KCACHE_CLEAN" "$KWS_CLEAN/kiln-out"
echo "kiln peak RSS clean: $(cd "$KWS_CLEAN" && KILN_CACHE_DIR=$KCACHE_CLEAN rss "$KILN" build //... $KFLAGS)" >> "$ENV"
echo "kiln peak RSS no-op: $(cd "$KWS" && KILN_CACHE_DIR=$KCACHE rss "$KILN" build //... $KFLAGS)" >> "$ENV"
echo "leaf $(date +%s%N)" >> "$KWS/p0/s0.txt"
echo "kiln peak RSS leaf:  $(cd "$KWS" && KILN_CACHE_DIR=$KCACHE rss "$KILN" build //... $KFLAGS)" >> "$ENV"

cat "$RESULTS/genrules.md"
tail -n 8 "$ENV"
# Kiln/Bazel per scenario against issue 2's targets.
python3 "$HERE/../ratios.py" "$RESULTS/genrules-ratios.md" "$RESULTS/genrules.json" \
    "no-op=kiln-noop/bazel-noop<=0.1" "clean build=kiln-clean/bazel-clean<=0.35" \
    "one leaf change=kiln-leaf/bazel-leaf<=0.35"
