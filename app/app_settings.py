"""Settings only the desktop app uses, declared once like the engine's and the
network's (engine/settings.py has the `Setting` type). Qt-free.
"""

from __future__ import annotations

from engine.settings import Setting

THEMES = ("system", "light", "dark")

APP_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "theme",
        "choice",
        "system",
        "Colours",
        "system follows the desktop's light or dark scheme; light or dark picks one "
        "for Hailstone alone.",
        choices=THEMES,
        group="General",
    ),
    Setting(
        "gpu_pause_programs",
        "str_list",
        (),
        "Pause the GPU while running",
        "Program names (separated by ';', e.g. 'steam; game.exe') whose running pauses "
        "only the GPU (for games); the CPU keeps computing.",
        group="When",
    ),
)
