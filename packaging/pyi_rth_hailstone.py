"""PyInstaller runtime hook: runs in the frozen Hailstone before main.py.

* numba: compiled kernels go to the Hailstone cache folder
  ($HAILSTONE_CACHE_DIR/numba, else platformdirs' user cache dir
  "hailstone/numba"), in a folder that does not depend on the current
  directory (see hailstone_numba_cache.py). A NUMBA_CACHE_DIR or
  NUMBA_CACHE_LOCATOR_CLASSES set by the user wins.

Nothing here imports Qt or numba, so `hailstone --help` stays quick.
"""

import os


def _hailstone_numba_cache_dir() -> str:
    explicit = os.environ.get("HAILSTONE_CACHE_DIR")
    if explicit:
        return os.path.join(explicit, "numba")
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("hailstone", appauthor=False), "numba")


if not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = _hailstone_numba_cache_dir()
if not os.environ.get("NUMBA_CACHE_LOCATOR_CLASSES"):
    os.environ["NUMBA_CACHE_LOCATOR_CLASSES"] = "hailstone_numba_cache.FrozenCacheLocator"

del _hailstone_numba_cache_dir
