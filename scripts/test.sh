#!/usr/bin/env bash
# Set up .venv with the dev tools, then run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
echo "== ruff" >&2
.venv/bin/ruff check .
echo "== import contracts" >&2
.venv/bin/lint-imports
echo "== pytest" >&2
exec .venv/bin/python -m pytest "$@"
