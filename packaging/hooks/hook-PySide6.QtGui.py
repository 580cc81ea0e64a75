"""Hailstone's copy of PyInstaller's PySide6.QtGui hook, minus Qt plugins it never loads.

PyInstaller collects every plugin of the types QtGui uses. Left out here:

* the GTK 3 platform theme (libqgtk3): it loads the system's GTK 3 against the
  glib, cairo and pango copies it would drag into the bundle, a known source of
  crashes when they differ; without it Qt uses its own style and the XDG desktop
  portal (colour scheme included);
* platforms and input plugins for embedded devices (eglfs, linuxfb, vnc,
  Vulkan display, evdev/tuio input).

Kept: offscreen, minimal, xcb (X11), wayland (and its shell/decoration plugins),
windows, cocoa, the image formats (SVG icons), iconengines and the TLS backends.
"""

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

DROP_PLUGIN_DIRS = ("egldeviceintegrations", "generic")
DROP_PLUGIN_STEMS = ("qgtk3", "qeglfs", "qlinuxfb", "qvnc", "qvkkhrdisplay", "qminimalegl")


def _keep(src: str) -> bool:
    parts = src.replace("\\", "/").split("/")
    if "plugins" not in parts:
        return True
    rest = parts[parts.index("plugins") + 1 :]
    if rest and rest[0] in DROP_PLUGIN_DIRS:
        return False
    stem = rest[-1].split(".")[0].removeprefix("lib") if rest else ""
    return stem not in DROP_PLUGIN_STEMS


hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [entry for entry in binaries if _keep(entry[0])]
