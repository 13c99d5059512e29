#!/bin/bash
# Prints "<words> <file name>" for each file argument, as a stable summary.
set -euo pipefail
for f in "$@"; do
  printf '%s %s\n' "$(wc -w < "$f" | tr -d ' ')" "$(basename "$f")"
done
