"""Icons and colours; follows the system light/dark scheme (plots included)."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QIcon


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


def is_dark() -> bool:
    app = QGuiApplication.instance()
    if app is None:
        return False
    return app.styleHints().colorScheme() == Qt.ColorScheme.Dark


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
