"""Which system libraries Qt's X11 (xcb) platform plugin needs and this system lacks.

Without them Qt aborts at start with "could not load the Qt platform plugin xcb",
a message that names neither the missing library nor the package to install (a
plain Debian desktop lacks libxcb-cursor0, libxcb-icccm4 and libxcb-keysyms1).
`check()` runs `ldd` on the plugin PySide6 ships (the exact list for this build,
its dependencies' dependencies included) before any Qt library is loaded, and
says which Debian/Ubuntu packages to install. No Qt import here: this runs
before Qt, and from `scripts/setup.sh` (`python -m app.syslibs`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Shared-library soname -> Debian/Ubuntu package (the libraries Qt 6's xcb plugin uses).
DEBIAN_PACKAGES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}


@dataclass(frozen=True, slots=True)
class Missing:
    """Libraries the xcb plugin cannot load, and the packages that provide them.

    Attributes:
        libraries: sonames that `ldd` reports as "not found", sorted.
        packages: Debian/Ubuntu packages for those (libraries without a known
            package are named as they are).
    """

    libraries: tuple[str, ...]
    packages: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.libraries)

    def advice(self) -> str:
        """What to tell the volunteer (several lines)."""
        return (
            "Hailstone's window needs system libraries for X11 that are missing here:\n  "
            + ", ".join(self.libraries)
            + "\nOn Debian or Ubuntu, install them with:\n  sudo apt install "
            + " ".join(self.packages)
            + "\nthen start Hailstone again. (Headless use, such as `main.py node`, "
            "needs none of them.)"
        )


def xcb_plugin() -> Path | None:
    """The xcb platform plugin of the PySide6 this program runs with, if present."""
    try:
        import PySide6  # the package only; no Qt library is loaded by this
    except ImportError:
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def parse_ldd(text: str) -> tuple[str, ...]:
    """The sonames `ldd` lists as "not found" (each once, sorted)."""
    missing = set()
    for line in text.splitlines():
        name, sep, where = line.strip().partition("=>")
        if sep and where.strip().startswith("not found"):
            missing.add(name.strip())
    return tuple(sorted(missing))


def missing_for(plugin: Path) -> Missing:
    """Run ldd on `plugin`; an unreadable answer counts as nothing missing (Qt then
    reports for itself)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return Missing((), ())
    try:
        out = subprocess.run(
            [ldd, os.fspath(plugin)], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return Missing((), ())
    libs = parse_ldd(out)
    packages = tuple(sorted({DEBIAN_PACKAGES.get(lib, lib) for lib in libs}))
    return Missing(libs, packages)


def uses_xcb(env: dict[str, str] | None = None) -> bool:
    """Whether Qt will try the xcb plugin in this session (Linux, X11, not overridden)."""
    env = dict(os.environ if env is None else env)
    if not sys.platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(":", 1)[0].split(";", 1)[0] == "xcb"
    # Qt prefers Wayland when a Wayland session is running; else X11.
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def check(env: dict[str, str] | None = None) -> Missing:
    """What is missing for the window in this session (nothing when xcb is not used)."""
    if not uses_xcb(env):
        return Missing((), ())
    plugin = xcb_plugin()
    return missing_for(plugin) if plugin is not None else Missing((), ())


def main() -> int:
    """`python -m app.syslibs`: print the advice; exit status 1 when something is missing.

    Checks the plugin even outside an X11 session (setup runs before any window).
    """
    plugin = xcb_plugin()
    if plugin is None or not sys.platform.startswith("linux"):
        return 0
    missing = missing_for(plugin)
    if missing:
        print(missing.advice(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
