"""Issue #14 item 8: missing X11 libraries are named with the packages to install."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import syslibs

ROOT = Path(__file__).resolve().parent.parent

# Recorded from `ldd libqxcb.so` on a Debian 12 machine without three packages.
LDD = """\
\tlinux-vdso.so.1 (0x00007ffc)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f)
\tlibweird.so.9 => not found
"""


def test_ldd_output_becomes_libraries_and_debian_packages():
    libs = syslibs.parse_ldd(LDD)
    assert libs == (
        "libweird.so.9",
        "libxcb-cursor.so.0",
        "libxcb-icccm.so.4",
        "libxcb-keysyms.so.1",
    )
    pkgs = sorted({syslibs.DEBIAN_PACKAGES.get(x, x) for x in libs})
    m = syslibs.Missing(libs, tuple(pkgs))
    text = m.advice()
    assert "sudo apt install libweird.so.9 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in text


def test_only_an_x11_session_checks():
    assert syslibs.uses_xcb({"DISPLAY": ":0"}) == sys.platform.startswith("linux")
    assert not syslibs.uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"})
    assert not syslibs.uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"})
    assert syslibs.uses_xcb({"QT_QPA_PLATFORM": "xcb"}) == sys.platform.startswith("linux")
    assert not syslibs.check({"QT_QPA_PLATFORM": "offscreen"})


@pytest.mark.skipif(syslibs.xcb_plugin() is None, reason="PySide6 without the xcb plugin")
def test_the_real_plugin_agrees_with_the_dynamic_loader():
    """What the check calls missing cannot be loaded; everything else it depends on can."""
    missing = syslibs.missing_for(syslibs.xcb_plugin())
    for lib in missing.libraries:
        with pytest.raises(OSError):
            ctypes.CDLL(lib)
    for pkg in missing.packages:
        assert pkg in syslibs.DEBIAN_PACKAGES.values() or pkg.endswith(".so") or ".so." in pkg


@pytest.mark.skipif(
    syslibs.xcb_plugin() is None or not syslibs.missing_for(syslibs.xcb_plugin()),
    reason="every library of the xcb plugin is installed here",
)
def test_the_app_says_what_to_install_instead_of_aborting():
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":97", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "gui", "--data-dir", os.devnull + "-unused"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "sudo apt install" in out.stderr and "libxcb" in out.stderr
    assert "could not load the Qt platform plugin" not in out.stderr


@pytest.mark.skipif(syslibs.xcb_plugin() is None, reason="PySide6 without the xcb plugin")
def test_setup_check_exit_status_follows_what_is_missing():
    """`python -m app.syslibs` is what scripts/setup.sh runs after installing."""
    out = subprocess.run(
        [sys.executable, "-m", "app.syslibs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    missing = syslibs.missing_for(syslibs.xcb_plugin())
    assert out.returncode == (1 if missing else 0)
    for pkg in missing.packages:
        assert pkg in out.stderr
