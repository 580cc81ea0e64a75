#!/usr/bin/env bash
# Set up .venv if needed, then start Hailstone (the desktop app; pass a
# sub-command such as `verify` or `node` for headless use).
set -euo pipefail
cd "$(dirname "$0")/.."
# With an NVIDIA driver present, the GPU extra (CuPy and its NVRTC) comes too.
extras=""
if [ -e /proc/driver/nvidia/version ] || command -v nvidia-smi >/dev/null 2>&1; then
	extras=gpu
fi
scripts/setup.sh $extras
exec .venv/bin/python main.py "$@"
