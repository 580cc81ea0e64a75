"""cupy_backends in the frozen Hailstone: every submodule (they import one another
from C), minus the bindings of CUDA libraries the bundle does not ship (the spec's
hooksconfig["cupy"]["leave_out"]). See hook-cupy.py.
"""

from PyInstaller.utils.hooks import collect_submodules, get_hook_config


def hook(hook_api):
    leave_out = tuple(get_hook_config(hook_api, "cupy", "leave_out") or ())
    hook_api.add_imports(
        *collect_submodules(
            "cupy_backends",
            filter=lambda name: not any(name == x or name.startswith(x + ".") for x in leave_out),
        )
    )
