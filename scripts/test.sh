#!/usr/bin/env bash
# Set up .venv with the dev tools, then run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# On Linux the GPU extra comes too: real CuPy and NVRTC let the tests compile
# the kernel exactly as CuPy will and take the no-driver path with real CuPy.
extras=dev
case "$(uname -s)-$(uname -m)" in
Linux-x86_64 | Linux-aarch64) extras=dev,gpu ;;
esac
scripts/setup.sh "$extras"
# Xvfb lets the tests talk to a real X server (idle-time detection); installed
# where this script may (root with apt), skipped with a reason elsewhere.
if ! command -v Xvfb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "Installing Xvfb for the X11 tests ..." >&2
	(apt-get install -y -qq xvfb >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq xvfb >/dev/null 2>&1; }) ||
		echo "Xvfb could not be installed; the X11 test will be skipped." >&2
fi
# systemd-analyze verifies the service units (tests/test_systemd_units.py).
if ! command -v systemd-analyze >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "Installing systemd for systemd-analyze ..." >&2
	(apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1; }) ||
		echo "systemd could not be installed; the unit tests will fail and say so." >&2
fi
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
echo "== ruff" >&2
.venv/bin/ruff check .
echo "== import contracts" >&2
.venv/bin/lint-imports
echo "== pytest" >&2
exec .venv/bin/python -m pytest "$@"
