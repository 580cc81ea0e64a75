"""PyInstaller runtime hook: answer cuda.pathfinder's helper subprocess.

Before every kernel compile CuPy asks cuda.pathfinder where the CUDA headers
are. Where no CUDA toolkit is installed (most volunteers' machines) pathfinder
runs `sys.executable -m cuda.pathfinder._dynamic_libs.dynamic_lib_subprocess
canary cudart` and reads one JSON line from it. In the frozen app
sys.executable is Hailstone itself, whose command line knows no `-m`: the
helper would exit with status 2, pathfinder would raise ChildProcessError, and
every cupy.RawModule compile, so the whole GPU backend, would fail on exactly
the machines with a GPU. This hook runs that one module, as `python -m` would,
and exits before main.py. Any other `-m` goes on to main.py as before.
"""

import sys

PATHFINDER_HELPERS = ("cuda.pathfinder._dynamic_libs.dynamic_lib_subprocess",)

if len(sys.argv) >= 3 and sys.argv[1] == "-m" and sys.argv[2] in PATHFINDER_HELPERS:
    import runpy

    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)  # raises SystemExit
    sys.exit(0)
