#!/bin/bash
# Checks the generated files through their runfiles paths, as a Bazel sh_test would.
set -euo pipefail
dir="core/text"
grep -q "little cat feet" "$dir/anthology.txt"
grep -q "LITTLE CAT FEET" "$dir/shout.txt"
if grep -q "not finished" "$dir/anthology.txt"; then
  echo "draft poems must be excluded by the glob" >&2
  exit 1
fi
grep -qx "7 fog.txt" "$dir/counts.txt"
grep -qx "8 wheelbarrow.txt" "$dir/counts.txt"
test -n "$TEST_TMPDIR" && test -d "$TEST_TMPDIR"
echo "all checks passed"
