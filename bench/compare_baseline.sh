#!/usr/bin/env bash
# Run the C baseline and Hailstone's CPU engine back to back at 2^71 and print
# numbers/s and ratios. Needs gcc and libgmp-dev for the baseline.
#   bench/compare_baseline.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
baseline="${BASELINE_DIR:-../shared/baseline}"
py=.venv/bin/python
count=$((1 << 32))
base=$("$baseline/run.sh" 2^71 "$count" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["numbers_per_second"])')
one=$("$py" main.py bench --cores 1 --seconds "$seconds" --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["numbers_per_second"])')
two=$("$py" main.py bench --cores 2 --seconds "$seconds" --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["numbers_per_second"])')
"$py" - "$base" "$one" "$two" <<'PY'
import sys
base, one, two = map(float, sys.argv[1:])
print(f"C baseline (1 core, k=24):  {base:.3e} numbers/s")
print(f"Hailstone cpu, 1 core:      {one:.3e} numbers/s  ({one / base:.2f}x baseline)")
print(f"Hailstone cpu, 2 cores:     {two:.3e} numbers/s  ({two / one:.2f}x one core)")
PY
