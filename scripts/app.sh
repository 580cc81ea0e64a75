#!/usr/bin/env bash
# Set up .venv if needed, then start Hailstone (the desktop app; pass a
# sub-command such as `verify` or `node` for headless use).
set -euo pipefail
cd "$(dirname "$0")/.."
# With an NVIDIA driver present, the GPU extra (CuPy and its NVRTC) comes too.
extras=""
if [ -e /proc/driver/nvidia/version ] || command -v nvidia-smi >/dev/null 2>&1; then
	extras=gpu
	echo "hailstone: an NVIDIA driver is present, so the GPU extra (CuPy, NVRTC) is installed too." >&2
fi
scripts/setup.sh $extras
[ $# -eq 0 ] && echo "hailstone: starting the desktop app ..." >&2
exec .venv/bin/python main.py "$@"
