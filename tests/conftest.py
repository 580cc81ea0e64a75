"""Suite-wide test setup: offscreen Qt, no stray threads."""

from __future__ import annotations

import os

# Qt must not look for a display in tests; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_sessionstart(session) -> None:
    """Refuse to run the Qt tests on a PySide6 that corrupts None's refcount.

    PySide6 6.12.0 under Python 3.11 drops a reference to None on every void
    call; the interpreter then aborts mid-suite. pyproject.toml excludes it; this
    check names the cause if an environment has it anyway.
    """
    import gc
    import sys

    if sys.version_info >= (3, 12):
        return
    from PySide6.QtCore import QObject

    obj = QObject()
    # The garbage collector may free objects that held None during the loop
    # (a drop of one or two); the broken release loses one per call.
    gc.disable()
    try:
        before = sys.getrefcount(None)
        for _ in range(100):
            obj.setObjectName("x")
        lost = before - sys.getrefcount(None)
    finally:
        gc.enable()
    if lost >= 50:
        raise SystemExit("PySide6 loses references to None here: install a version other than 6.12.0")
