"""Where numba keeps its compiled kernels in the frozen (PyInstaller) Hailstone.

numba's `cache=True` normally writes next to the module's source file. A frozen
app has no source files, and the code objects carry relative file names
("engine/cpu.py"), so numba's own choice would be a per-user folder whose name
depends on the *current directory* (a fresh compile, about 5 s, for every
directory the app is started from). This locator puts the cache in
`$NUMBA_CACHE_DIR/<executable>-<package>` instead; the runtime hook
(pyi_rth_hailstone.py) sets NUMBA_CACHE_DIR to the Hailstone cache folder and
names this class in NUMBA_CACHE_LOCATOR_CLASSES.

The source stamp stays numba's frozen-app stamp (a hash of the executable,
which holds the app's Python code), so a new build recompiles once. The
executable's name is part of the folder so that hailstone.exe and
hailstone-cli.exe (Windows) do not overwrite each other's index.
"""

from __future__ import annotations

import os
import sys

from numba.core import caching, config

_Base = getattr(caching, "_CacheLocator", None)
_Mixin = getattr(caching, "_SourceFileBackedLocatorMixin", None)
# numba's user-wide locator: the fallback when the Hailstone folder is unusable.
_FALLBACK = getattr(caching, "UserWideCacheLocator", None) or getattr(
    caching, "_UserWideCacheLocator", None
)


class FrozenCacheLocator(_Mixin, _Base):  # type: ignore[misc, valid-type]
    """numba cache locator for a frozen app: a stable folder under NUMBA_CACHE_DIR."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        exe = os.path.splitext(os.path.basename(sys.executable))[0] or "hailstone"
        package = os.path.dirname(py_file).replace("\\", "/").strip("/").replace("/", ".")
        self._cache_path = os.path.join(config.CACHE_DIR, f"{exe}-{package or 'main'}")

    def get_cache_path(self):
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        if getattr(sys, "frozen", False) and config.CACHE_DIR:
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:
                pass  # not writable: numba's user-wide folder, as without this class
            else:
                return self
        if _FALLBACK is not None:
            return _FALLBACK.from_function(py_func, py_file)
        return None
