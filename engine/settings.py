"""Settings declared once: typed entries, and a JSON store that saves only changes.

Each option is one `Setting` entry. The desktop app builds its preferences
widgets from these entries and the headless node reads the same store, so a
setting's type, default, title and help live in exactly one place
(docs/ARCHITECTURE.md, "Settings"). The store (`SettingsStore`) is a JSON file
under the data directory holding only values that differ from their defaults;
unknown or invalid keys are dropped with a logged warning instead of stopping
the program, and renamed keys move through the `MIGRATIONS` table.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.files import write_atomic

log = logging.getLogger(__name__)

# Kinds a setting can have; each maps to one validator below and one widget in app/.
KINDS = ("bool", "int", "float", "str", "choice", "str_list", "int_list", "schedule", "timestamp")

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_RE = re.compile(
    r"^\s*(?P<days>[A-Za-z]{3}(?:\s*[-,]\s*[A-Za-z]{3})*)\s+"
    r"(?P<h1>\d{1,2}):(?P<m1>\d{2})\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})\s*$"
)


@dataclass(frozen=True, slots=True)
class ScheduleWindow:
    """A weekly time window: on `days` (0 = Monday), from `start_min` to `end_min`.

    Minutes are counted from midnight; `end_min` may be 1440 (24:00). A window
    whose end is before its start runs past midnight into the next day.
    """

    days: frozenset[int]
    start_min: int
    end_min: int

    def contains(self, weekday: int, minute: int) -> bool:
        """Whether the moment (weekday 0..6, minute 0..1439) falls in the window."""
        if self.start_min <= self.end_min:
            return weekday in self.days and self.start_min <= minute < self.end_min
        # Overnight: the evening part on a listed day, the morning part on the day after.
        if weekday in self.days and minute >= self.start_min:
            return True
        return (weekday - 1) % 7 in self.days and minute < self.end_min


def parse_window(text: str) -> ScheduleWindow:
    """Parse one window written like ``Mon-Fri 18:00-08:00`` or ``Sat,Sun 00:00-24:00``.

    Raises:
        ValueError: with a message naming what is wrong.
    """
    m = _WINDOW_RE.match(text)
    if not m:
        raise ValueError(f"not a time window: {text!r} (write e.g. 'Mon-Fri 18:00-08:00')")
    days: set[int] = set()
    for part in re.split(r"\s*,\s*", m["days"].strip()):
        ends = [p.strip().lower() for p in part.split("-")]
        for d in ends:
            if d not in _DAY_NAMES:
                raise ValueError(f"unknown day {d!r} in {text!r} (use Mon, Tue, ... Sun)")
        a, b = _DAY_NAMES.index(ends[0]), _DAY_NAMES.index(ends[-1])
        i = a
        while True:  # a range may wrap over the week's end (Sat-Mon)
            days.add(i)
            if i == b:
                break
            i = (i + 1) % 7
    h1, m1, h2, m2 = int(m["h1"]), int(m["m1"]), int(m["h2"]), int(m["m2"])
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 1440:
        raise ValueError(f"not a valid time in {text!r}")
    if start == end:
        raise ValueError(f"empty time window {text!r}")
    return ScheduleWindow(frozenset(days), start, end)


@dataclass(frozen=True, slots=True)
class Setting:
    """One option, declared once.

    Attributes:
        key: the name in the settings file.
        kind: one of KINDS.
        default: the value when the file does not set one (of the kind's type).
        title: short label for the preferences page.
        help: one or two sentences for the tooltip / command-line help.
        unit: what the number counts ("%", "s", "cores"), "" for none.
        restart: True when a change takes effect only after a restart.
        choices: allowed values for kind "choice".
        minimum, maximum: bounds for "int"/"float" (inclusive), None for none.
        group: the preferences section it belongs to.
    """

    key: str
    kind: str
    default: Any
    title: str
    help: str
    unit: str = ""
    restart: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    group: str = "General"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"setting {self.key}: unknown kind {self.kind!r}")
        # A default that fails its own type is a programming error; fail at import.
        self.validate(self.default)

    def validate(self, value: Any) -> Any:
        """The value converted to this setting's type.

        Raises:
            ValueError: when the value does not fit, with a readable message.
        """
        k = self.kind
        if k == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError(f"{self.key}: expected true or false, got {value!r}")
        if k in ("int", "float", "timestamp"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{self.key}: expected a number, got {value!r}")
            if k == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(f"{self.key}: expected a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"{self.key}: {value} is below the minimum {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"{self.key}: {value} is above the maximum {self.maximum:g}")
            if k == "timestamp" and value < 0:
                raise ValueError(f"{self.key}: a time cannot be negative")
            return value
        if k in ("str", "choice"):
            if not isinstance(value, str):
                raise ValueError(f"{self.key}: expected text, got {value!r}")
            if k == "choice" and value not in self.choices:
                raise ValueError(f"{self.key}: {value!r} is not one of {', '.join(self.choices)}")
            return value
        if k in ("str_list", "schedule"):
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{self.key}: expected a list of text, got {value!r}")
            items = [v.strip() for v in value if v.strip()]
            if k == "schedule":
                for item in items:
                    parse_window(item)
            return tuple(items)
        if k == "int_list":
            if not isinstance(value, list | tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
            ):
                raise ValueError(f"{self.key}: expected a list of whole numbers, got {value!r}")
            return tuple(sorted(set(value)))
        raise AssertionError(k)  # pragma: no cover - KINDS is checked in __post_init__


ENGINE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "params",
        "choice",
        "production",
        "Parameter set",
        "Which protocol parameters to compute: production for the real search, "
        "dev for a small local test network.",
        restart=True,
        choices=("production", "dev"),
        group="Compute",
    ),
    Setting(
        "cpu_cores",
        "int",
        0,
        "CPU cores",
        "How many CPU cores compute at once; 0 means all cores but one.",
        unit="cores",
        minimum=0,
        maximum=1024,
        group="Compute",
    ),
    Setting(
        "cpu_share",
        "int",
        100,
        "CPU time share",
        "Compute this share of the time and rest the remainder, for a cooler, quieter machine.",
        unit="%",
        minimum=5,
        maximum=100,
        group="Compute",
    ),
    Setting(
        "gpu_enabled",
        "bool",
        True,
        "Use the GPU",
        "Compute on the graphics card when one is present; the CPU takes over otherwise.",
        group="Compute",
    ),
    Setting(
        "gpu_devices",
        "int_list",
        (),
        "GPU devices",
        "Which GPUs to use, by index; empty means all of them. Each one gets "
        "its own worker and a share of every batch.",
        group="Compute",
    ),
    Setting(
        "idle_only",
        "bool",
        False,
        "Only when idle",
        "Compute only after the keyboard and mouse have been idle for a while.",
        group="When",
    ),
    Setting(
        "idle_seconds",
        "int",
        300,
        "Idle after",
        "How long without input counts as idle.",
        unit="s",
        minimum=10,
        maximum=86400,
        group="When",
    ),
    Setting(
        "pause_on_battery",
        "bool",
        True,
        "Pause on battery",
        "Stop computing while the computer runs on battery.",
        group="When",
    ),
    Setting(
        "schedule",
        "schedule",
        (),
        "Weekly schedule",
        "Compute only inside these windows, separated by ';', e.g. 'Mon-Fri 18:00-08:00'. "
        "Empty means any time.",
        group="When",
    ),
    Setting(
        "pause_programs",
        "str_list",
        (),
        "Pause while running",
        "Program names (separated by ';', e.g. 'blender; game.exe') whose running pauses "
        "computing.",
        group="When",
    ),
    Setting(
        "snooze_until",
        "timestamp",
        0.0,
        "Snoozed until",
        "Computing is paused until this time (seconds since the epoch); 0 for not snoozed.",
        group="Hidden",
    ),
    Setting(
        "start_at_login",
        "bool",
        False,
        "Start at login",
        "Open Hailstone in the background when you log in.",
        group="General",
    ),
    Setting(
        "start_minimized",
        "bool",
        False,
        "Start minimised",
        "Start in the tray (or minimised) instead of showing the window.",
        group="General",
    ),
)

# The profile's settings file (the app writes it; `main.py node` reads it too).
SETTINGS_FILE = "settings.json"

# Renamed or removed keys: old key -> new key, or None to drop it silently.
MIGRATIONS: dict[str, str | None] = {
    "cores": "cpu_cores",
    "cpu_percent": "cpu_share",
    "gpu": "gpu_enabled",
    "minimized": "start_minimized",
}


class SettingsStore:
    """Typed settings backed by a JSON file that holds only non-default values.

    Args:
        path: the JSON file (created on the first change).
        settings: the declared entries (e.g. ENGINE_SETTINGS + NETWORK_SETTINGS).
        migrations: renamed keys, old -> new (None drops the key).
        read_only: read the file, never write it (the headless node reads the profile's
            settings.json, which the app owns). Keys not declared in `settings` are then
            another front end's (the app's own), skipped without a warning; `set`
            raises.
    """

    def __init__(
        self,
        path: Path | None,
        settings: Iterable[Setting],
        migrations: Mapping[str, str | None] | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.read_only = read_only
        self.settings: dict[str, Setting] = {}
        for s in settings:
            if s.key in self.settings:
                raise ValueError(f"setting {s.key!r} declared twice")
            self.settings[s.key] = s
        self.migrations = dict(MIGRATIONS if migrations is None else migrations)
        self._values: dict[str, Any] = {}
        self._listeners: list[Callable[[str, Any], None]] = []
        self.warnings: list[str] = []
        self.load()

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        log.warning("settings: %s", text)

    def load(self) -> None:
        """(Re)read the file; bad entries are dropped with a warning, never raised."""
        self._values = {}
        if self.path is None or not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._warn(f"could not read {self.path} ({exc}); using defaults")
            return
        if not isinstance(raw, dict):
            self._warn(f"{self.path} does not hold an object; using defaults")
            return
        changed = False
        for key, value in raw.items():
            while key in self.migrations:  # chains of renames
                new = self.migrations[key]
                changed = True
                if new is None:
                    key = None
                    break
                key = new
            if key is None:
                continue
            setting = self.settings.get(key)
            if setting is None and self.read_only:
                continue  # another front end's setting (the app's theme, say)
            if setting is None:
                self._warn(f"unknown setting {key!r} dropped")
                changed = True
                continue
            try:
                value = setting.validate(value)
            except ValueError as exc:
                self._warn(f"invalid value dropped: {exc}")
                changed = True
                continue
            if value != setting.default:
                self._values[key] = value
        if changed and not self.read_only:
            self.save()

    def save(self, values: Mapping[str, Any] | None = None) -> None:
        """Write the non-default values (the current ones unless given) atomically.

        Raises:
            OSError: the file cannot be written (disk full, read-only folder).
        """
        if self.path is None:
            return
        current = self._values if values is None else values
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(current.items())}
        write_atomic(self.path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def get(self, key: str) -> Any:
        """The current value (the default when unset). Raises KeyError for unknown keys."""
        setting = self.settings[key]
        return self._values.get(key, setting.default)

    def values(self) -> dict[str, Any]:
        """Every setting's current value."""
        return {k: self.get(k) for k in self.settings}

    def set(self, key: str, value: Any) -> Any:
        """Validate, store and persist one value; listeners hear about real changes.

        Returns:
            The stored (converted) value.

        Raises:
            KeyError: unknown key. ValueError: the value does not fit.
            OSError: the file could not be written; memory keeps the old value
                (PermissionError on a read-only store).
        """
        if self.read_only:
            raise PermissionError(f"settings {self.path} are read-only here")
        setting = self.settings[key]
        value = setting.validate(value)
        old = self.get(key)
        if value == old:
            return value
        # Write a copy first: when the disk refuses, memory and file still agree.
        new = dict(self._values)
        if value == setting.default:
            new.pop(key, None)
        else:
            new[key] = value
        self.save(new)
        self._values = new
        for listener in list(self._listeners):
            listener(key, value)
        return value

    def reset(self, key: str) -> None:
        self.set(key, self.settings[key].default)

    def subscribe(self, listener: Callable[[str, Any], None]) -> None:
        """Call `listener(key, value)` after every change."""
        self._listeners.append(listener)


def effective_cores(cpu_cores: int, cpu_count: int | None = None) -> int:
    """The core count a `cpu_cores` setting means here (0 = all cores but one)."""
    n = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if cpu_cores <= 0:
        return max(1, n - 1)
    return max(1, min(cpu_cores, n))
