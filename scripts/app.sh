#!/usr/bin/env bash
# Set up .venv if needed, then start Hailstone (the desktop app; pass a
# sub-command such as `verify` or `node` for headless use).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python main.py "$@"
