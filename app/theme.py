"""Icons and colours: the system light/dark scheme, or the volunteer's choice (plots included)."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication


def resources_dir() -> Path:
    """resources/ next to the code, or inside a PyInstaller bundle."""
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent.parent))
    return base / "resources"


@functools.cache
def icon(name: str) -> QIcon:
    """An SVG icon from resources/icons (scales cleanly on high-DPI screens).

    Loaded once per name: the tray asks for its state icon twice a second.
    """
    return QIcon(str(resources_dir() / "icons" / f"{name}.svg"))


def state_icon(state: str) -> QIcon:
    return icon(
        {
            "computing": "state-computing",
            "error": "state-error",
            "waiting": "state-waiting",
            "idle": "state-waiting",
        }.get(state, "state-paused")
    )


# The volunteer's choice ("system", "light" or "dark"); see apply_scheme.
_chosen = "system"
_system_palette: QPalette | None = None


def is_dark() -> bool:
    if _chosen != "system":
        return _chosen == "dark"
    app = QGuiApplication.instance()
    if app is None:
        return False
    return app.styleHints().colorScheme() == Qt.ColorScheme.Dark


def _palette(dark: bool) -> QPalette:
    """Fusion's standard light palette, or a dark one with the same roles."""
    if not dark:
        return QApplication.style().standardPalette()
    p = QPalette()
    base, window, text = QColor("#1e1f22"), QColor("#2b2d31"), QColor("#e6e6e6")
    for role, colour in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, window),
        (QPalette.ColorRole.ToolTipBase, window),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, window),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.Highlight, QColor("#3b82f6")),
        (QPalette.ColorRole.HighlightedText, QColor("#ffffff")),
        (QPalette.ColorRole.Link, QColor("#7db3ff")),
        (QPalette.ColorRole.PlaceholderText, QColor("#9a9a9a")),
    ):
        p.setColor(role, colour)
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.ButtonText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return p


def apply_scheme(choice: str) -> None:
    """Light, dark, or the system's scheme, for the whole app (live).

    Qt 6.8's `QStyleHints.setColorScheme` is asked first; platforms that ignore it
    (no platform theme, the offscreen platform) get an explicit palette, so the
    choice holds everywhere. "system" puts the desktop's palette back.
    """
    global _chosen, _system_palette
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    if _system_palette is None:
        _system_palette = QPalette(app.palette())
    _chosen = choice if choice in ("light", "dark") else "system"
    hints = app.styleHints()
    if _chosen == "system":
        if hasattr(hints, "unsetColorScheme"):
            hints.unsetColorScheme()
        app.setPalette(_system_palette)
    else:
        if hasattr(hints, "setColorScheme"):
            hints.setColorScheme(Qt.ColorScheme.Dark if _chosen == "dark" else Qt.ColorScheme.Light)
        app.setPalette(_palette(_chosen == "dark"))


@dataclass(frozen=True, slots=True)
class PlotColours:
    background: str
    foreground: str
    cpu: str
    gpu: str
    grid_alpha: float


LIGHT = PlotColours("#ffffff", "#2d3748", "#2b6cb0", "#dd6b20", 0.25)
DARK = PlotColours("#1a202c", "#e2e8f0", "#63b3ed", "#f6ad55", 0.3)


def plot_colours() -> PlotColours:
    return DARK if is_dark() else LIGHT
