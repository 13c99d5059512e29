#!/bin/bash
# The Go binary converts with the table the Rust generator wrote.
set -euo pipefail
convert="mixed/convert"
[ "$("$convert" 1 km m)" = "1 km = 1000 m" ]
[ "$("$convert" 2 mi km)" = "2 mi = 3.218688 km" ]
[ "$("$convert" 5280 ft mi)" = "5280 ft = 1 mi" ]
if "$convert" 1 parsec m 2>/dev/null; then exit 1; fi
