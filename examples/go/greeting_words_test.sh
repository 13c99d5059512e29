#!/bin/bash
# The word counts the Go tool wrote through the genrule.
set -euo pipefail
out="go/greeting_words.txt"
grep -qx "hello 1" "$out"
grep -qx "name 1" "$out"
