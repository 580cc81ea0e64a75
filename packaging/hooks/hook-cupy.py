"""CuPy in the frozen Hailstone (the GPU backend; packaging/README.md).

pyinstaller-hooks-contrib has no CuPy hook, and the analysis alone is not
enough: CuPy's Cython modules import one another from C, where PyInstaller
cannot see it, and `import cupy` reads files next to its modules:

* every submodule of cupy is collected, except those the spec leaves out
  (hooksconfig["cupy"]["leave_out"], also in its EXCLUDES);
* so is every module that `import cupy` loads in a separate build-time
  interpreter: the Cython modules import standard-library modules (graphlib,
  for one) that nothing else in the app does;
* `cupy/_core/include` (CuPy's headers): every kernel compile, RawModule
  included, hashes some of them into its cache key and passes the folder to
  NVRTC with -I, so a missing header breaks the GPU backend only on a machine
  with a GPU. Kept whole;
* `cupy/.data/*.json`: the wheel's library-preload settings;
* `cupyx` and `cupy.testing`: `import cupy` sets them up as lazy modules with
  importlib.util.find_spec(), which must find them (Hailstone never uses them).

NVRTC itself comes from the nvidia-cuda-nvrtc-cu12 wheel; the spec adds it.
"""

from PyInstaller import isolated
from PyInstaller.utils.hooks import (
    collect_data_files,
    collect_submodules,
    get_hook_config,
    logger,
)


@isolated.decorate
def modules_loaded_by_import():
    """The modules `import cupy` (and CuPy's NVRTC binding) load: (names, error)."""
    import sys

    before = set(sys.modules)
    try:
        import cupy  # noqa: F401
        from cupy_backends.cuda.libs import nvrtc  # noqa: F401
    except Exception as exc:  # the smoke test's `hailstone gpu` fails the same way
        return [], repr(exc)
    # Only real modules (not Cython's runtime entries or aliases like typing.io).
    loaded = set(sys.modules) - before
    return sorted(n for n in loaded if getattr(sys.modules[n], "__spec__", None) is not None), ""


def left_out(name, leave_out):
    return any(name == x or name.startswith(x + ".") for x in leave_out)


def hook(hook_api):
    leave_out = tuple(get_hook_config(hook_api, "cupy", "leave_out") or ())
    loaded, error = modules_loaded_by_import()
    if error:
        logger.warning("hook-cupy: `import cupy` fails at build time: %s", error)
    hook_api.add_imports(
        *collect_submodules("cupy", filter=lambda name: not left_out(name, leave_out)),
        *(name for name in loaded if not left_out(name, leave_out)),
        "cupyx",
        "cuda.pathfinder",
    )
    hook_api.add_datas(collect_data_files("cupy", includes=["_core/include/**", ".data/*.json"]))
