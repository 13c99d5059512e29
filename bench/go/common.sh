# Shared by bench/go/run.sh and bench/go/real.sh (sourced, not run): finds the kiln binary, and
# times both tools side by side with hyperfine. Expects HERE, REPO, RESULTS, RUNS, CLEAN_RUNS,
# TMP, KC, GC, BIN, kiln_cmd, go_cmd and an `edit DIR` function that prints a body-edit command.

command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
mkdir -p "$RESULTS"

# The kiln binary: $KILN_BIN, else a release build of the work tree.
kiln_binary() {
    if [ -n "${KILN_BIN:-}" ]; then
        echo "$KILN_BIN"
    else
        (cd "$REPO" && cargo build --release -p kiln-cli >&2)
        echo "$REPO/target/release/kiln"
    fi
}

# compare PREFIX KILN_CLEAN_PREPARE: one hyperfine run of no-op and body edit for both tools,
# then one of clean builds; results in $RESULTS/PREFIX-{incremental,clean}.{md,json}.
compare() {
    local prefix=$1 kiln_clean=$2
    hyperfine --style basic --export-markdown "$RESULTS/$prefix-incremental.md" \
        --export-json "$RESULTS/$prefix-incremental.json" --runs "$RUNS" --warmup 1 \
        -n kiln-noop --prepare true "$kiln_cmd" \
        -n go-noop --prepare true "$go_cmd" \
        -n kiln-body --prepare "$(edit "$TMP/kiln")" "$kiln_cmd" \
        -n go-body --prepare "$(edit "$TMP/go")" "$go_cmd"
    hyperfine --style basic --export-markdown "$RESULTS/$prefix-clean.md" \
        --export-json "$RESULTS/$prefix-clean.json" --runs "$CLEAN_RUNS" \
        -n kiln-clean --prepare "$kiln_clean" "$kiln_cmd" \
        -n go-clean --prepare "rm -rf $GC $BIN" "$go_cmd"
}
