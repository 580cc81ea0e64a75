#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv.
#   scripts/setup.sh          runtime dependencies
#   scripts/setup.sh dev      runtime + test/lint tools
#   scripts/setup.sh gpu      runtime + CuPy and NVRTC (NVIDIA GPUs)
# Re-installs only when pyproject.toml (or the chosen extras) changed. Says what it
# does and how long it took: a first install downloads a few hundred MB.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"
say() { echo "hailstone setup: $*" >&2; }
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
	echo "Hailstone needs Python 3.11 or newer (found: $("$python" --version 2>&1))." >&2
	exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
	say "Python's venv module is missing. On Debian or Ubuntu: sudo apt install python3-venv"
	exit 1
fi
started=$SECONDS
if [ ! -x .venv/bin/python ]; then
	say "creating the virtual environment in .venv (a few seconds) ..."
	"$python" -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp=".venv/.hailstone-install-$([ -n "$extras" ] && echo "$extras" || echo base)"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	if [ -f "$stamp" ]; then
		say "pyproject.toml changed: updating the installed packages ..."
	else
		say "installing Hailstone and its dependencies${extras:+ (extra: $extras)} into .venv."
		say "First time: about 300 MB to download (PySide6, numba, NumPy, pyqtgraph, the IPFS"
		gpu_note=""
		case "$extras" in *gpu*) gpu_note=", CuPy and NVRTC" ;; esac
		say "library$gpu_note); 2-5 minutes on a typical connection. Progress follows."
	fi
	.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
	# One line per package pip fetches, instead of minutes of silence.
	.venv/bin/python -m pip install --progress-bar off -e "$spec" 2>&1 |
		while IFS= read -r line; do
			case "$line" in
			Collecting*) say "  ${line#Collecting }" ;;
			"Installing collected packages"*) say "  installing the downloaded packages ..." ;;
			"Successfully installed"*) say "  done." ;;
			*ERROR* | *error:*) echo "$line" >&2 ;;
			esac
		done
	status=${PIPESTATUS[0]}
	if [ "$status" -ne 0 ]; then
		say "pip failed (exit status $status); the lines above say why."
		exit "$status"
	fi
	echo "$want" >"$stamp"
	say "ready in $((SECONDS - started)) s."
fi
# The window needs some X11 libraries that a plain desktop may lack: name them now,
# with the packages to install, instead of letting Qt abort later.
if [ "$(uname -s)" = Linux ]; then
	.venv/bin/python -m app.syslibs || say "the desktop app needs the packages above (headless commands work without them)."
fi
