# Shared by bench/go/run.sh and bench/go/real.sh (sourced, not run): finds the kiln binary, and
# times both tools side by side with hyperfine, runs interleaved (bench/hyperfine_interleaved.py).
# Expects HERE, REPO, RESULTS, RUNS, CLEAN_RUNS, TMP, KC, GC, BIN, kiln_cmd, go_cmd and an
# `edit DIR` function that prints a body-edit command; an `edit_called DIR` function, if defined,
# adds a second body edit (of a function the binaries run, so that their bytes change).

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

# compare PREFIX KILN_CLEAN_PREPARE: one interleaved run of no-op and body edit for both tools
# (each round runs all four once), one of the second body edit if `edit_called` is defined, then
# one of clean builds; results in $RESULTS/PREFIX-{incremental,called,clean}.{md,json}, and the
# Kiln/go ratios in $RESULTS/PREFIX-ratios.md.
compare() {
    local prefix=$1 kiln_clean=$2
    local jsons="$RESULTS/$prefix-incremental.json,$RESULTS/$prefix-clean.json" called_ratio=()
    "$REPO/bench/hyperfine_interleaved.py" --style basic --export-markdown "$RESULTS/$prefix-incremental.md" \
        --export-json "$RESULTS/$prefix-incremental.json" --runs "$RUNS" --warmup 1 \
        -n kiln-noop --prepare true "$kiln_cmd" \
        -n go-noop --prepare true "$go_cmd" \
        -n kiln-body --prepare "$(edit "$TMP/kiln")" "$kiln_cmd" \
        -n go-body --prepare "$(edit "$TMP/go")" "$go_cmd"
    if declare -F edit_called >/dev/null; then
        # Its own run: a build that rewrote the binaries leaves them within the racy window,
        # and the no-op right after one hashes them again, which is not the no-op measured above.
        "$REPO/bench/hyperfine_interleaved.py" --style basic --export-markdown "$RESULTS/$prefix-called.md" \
            --export-json "$RESULTS/$prefix-called.json" --runs "$RUNS" --warmup 1 \
            -n kiln-called --prepare "$(edit_called "$TMP/kiln")" "$kiln_cmd" \
            -n go-called --prepare "$(edit_called "$TMP/go")" "$go_cmd"
        jsons="$jsons,$RESULTS/$prefix-called.json"
        called_ratio=("body edit, called function=kiln-called/go-called<=0.5")
    fi
    "$REPO/bench/hyperfine_interleaved.py" --style basic --export-markdown "$RESULTS/$prefix-clean.md" \
        --export-json "$RESULTS/$prefix-clean.json" --runs "$CLEAN_RUNS" \
        -n kiln-clean --prepare "$kiln_clean" "$kiln_cmd" \
        -n go-clean --prepare "rm -rf $GC $BIN" "$go_cmd"
    # Kiln/go per scenario against issue 3's targets (hyperfine's own "Relative" column compares
    # every command with the fastest of its run).
    python3 "$REPO/bench/ratios.py" "$RESULTS/$prefix-ratios.md" "$jsons" \
        "clean build=kiln-clean/go-clean<=1.3" "no-op=kiln-noop/go-noop<=0.2" \
        "body edit=kiln-body/go-body<=0.5" "${called_ratio[@]}"
}
