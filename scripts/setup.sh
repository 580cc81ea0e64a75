#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv.
#   scripts/setup.sh          runtime dependencies
#   scripts/setup.sh dev      runtime + test/lint tools
# Re-installs only when pyproject.toml (or the chosen extras) changed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
	echo "Hailstone needs Python 3.11 or newer (found: $("$python" --version 2>&1))." >&2
	exit 1
fi
if [ ! -x .venv/bin/python ]; then
	echo "Creating .venv ..." >&2
	"$python" -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp=".venv/.hailstone-install-$([ -n "$extras" ] && echo "$extras" || echo base)"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	echo "Installing Hailstone and its dependencies into .venv ..." >&2
	.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
	.venv/bin/python -m pip install --quiet -e "$spec"
	echo "$want" >"$stamp"
fi
