"""When to compute: idle time, battery, weekly schedule, running programs, snooze.

`decide()` is a pure function of a `Situation` (what the probes saw) and the
settings, so tests pass values in directly. The probes are small per-platform
functions; each returns None when the platform gives no answer, and a rule whose
probe has no answer does not block computing (the caller logs a note once).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.settings import parse_window


@dataclass(frozen=True, slots=True)
class Situation:
    """What the platform probes saw at one moment (None: not known here)."""

    now: float
    idle_seconds: float | None = None
    on_battery: bool | None = None
    programs: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to compute now; `reason` says why not (a short phrase)."""

    run: bool
    reason: str = ""


def _norm_program(name: str) -> str:
    name = name.strip().lower()
    return name[:-4] if name.endswith(".exe") else name


def decide(settings: Mapping[str, Any], situation: Situation) -> Decision:
    """Apply the "when" settings to the situation.

    Args:
        settings: the engine settings values (snooze_until, schedule, idle_only,
            idle_seconds, pause_on_battery, pause_programs).
        situation: probe values.
    """
    snooze = float(settings.get("snooze_until", 0.0) or 0.0)
    if snooze > situation.now:
        until = _dt.datetime.fromtimestamp(snooze).strftime("%a %H:%M")
        return Decision(False, f"snoozed until {until}")
    if settings.get("pause_on_battery") and situation.on_battery:
        return Decision(False, "on battery")
    windows = settings.get("schedule") or ()
    if windows:
        t = _dt.datetime.fromtimestamp(situation.now)
        minute = t.hour * 60 + t.minute
        if not any(parse_window(w).contains(t.weekday(), minute) for w in windows):
            return Decision(False, "outside the schedule")
    wanted = {_norm_program(p) for p in settings.get("pause_programs") or () if p.strip()}
    if wanted and situation.programs is not None:
        running = sorted(wanted & {_norm_program(p) for p in situation.programs})
        if running:
            return Decision(False, f"{running[0]} is running")
    if settings.get("idle_only") and situation.idle_seconds is not None:
        need = float(settings.get("idle_seconds", 300))
        if situation.idle_seconds < need:
            return Decision(False, "waiting for the computer to be idle")
    return Decision(True)


# ---- platform probes -------------------------------------------------------


def idle_seconds() -> float | None:
    """Seconds since the last keyboard/mouse input, or None where unknown.

    Windows: GetLastInputInfo. Elsewhere there is no dependable API without
    extra packages (X11 needs libXss, Wayland has none), so None.
    """
    if sys.platform == "win32":  # pragma: no cover - Windows only

        class LASTINPUTINFO(ctypes.Structure):
            _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]

        info = LASTINPUTINFO()
        info.cbSize = ctypes.sizeof(info)
        if not ctypes.windll.user32.GetLastInputInfo(ctypes.byref(info)):
            return None
        return (ctypes.windll.kernel32.GetTickCount() - info.dwTime) / 1000.0
    return None


def on_battery(power_supply: Path = Path("/sys/class/power_supply")) -> bool | None:
    """True when running on battery, False on mains, None where unknown."""
    if sys.platform == "win32":  # pragma: no cover - Windows only

        class SYSTEM_POWER_STATUS(ctypes.Structure):
            _fields_ = [
                ("ACLineStatus", ctypes.c_ubyte),
                ("BatteryFlag", ctypes.c_ubyte),
                ("BatteryLifePercent", ctypes.c_ubyte),
                ("SystemStatusFlag", ctypes.c_ubyte),
                ("BatteryLifeTime", ctypes.c_ulong),
                ("BatteryFullLifeTime", ctypes.c_ulong),
            ]

        s = SYSTEM_POWER_STATUS()
        if not ctypes.windll.kernel32.GetSystemPowerStatus(ctypes.byref(s)):
            return None
        return {0: True, 1: False}.get(s.ACLineStatus)
    if sys.platform.startswith("linux"):
        try:
            supplies = list(power_supply.iterdir())
        except OSError:
            return None
        saw_mains = False
        for sup in supplies:
            try:
                kind = (sup / "type").read_text().strip()
                if kind == "Mains":
                    saw_mains = True
                    if (sup / "online").read_text().strip() == "1":
                        return False
                elif kind == "Battery":
                    if (sup / "status").read_text().strip() == "Discharging":
                        return True
            except OSError:
                continue
        return True if saw_mains else None
    return None  # macOS: pmset parsing left out; the rule simply does not apply


def running_programs(proc: Path = Path("/proc")) -> frozenset[str] | None:
    """Names of running programs, or None where this platform is not supported."""
    if sys.platform.startswith("linux"):
        names = set()
        try:
            entries = list(proc.iterdir())
        except OSError:
            return None
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                names.add((entry / "comm").read_text().strip())
            except OSError:
                continue  # the process ended meanwhile
        return frozenset(names)
    if sys.platform == "win32":  # pragma: no cover - Windows only
        try:
            out = subprocess.run(
                ["tasklist", "/fo", "csv", "/nh"],
                capture_output=True,
                text=True,
                timeout=10,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return frozenset(line.split('","')[0].strip('"') for line in out.splitlines() if line)
    return None  # macOS and others: not probed (would need ps parsing)


def probe(programs_needed: bool = True) -> Situation:
    """Probe the platform now (the program list only when some rule needs it)."""
    return Situation(
        now=time.time(),
        idle_seconds=idle_seconds(),
        on_battery=on_battery(),
        programs=running_programs() if programs_needed else None,
    )


def unsupported_notes(settings: Mapping[str, Any], situation: Situation) -> list[str]:
    """Rules the user switched on that this platform cannot check (for a one-time note)."""
    notes = []
    if settings.get("idle_only") and situation.idle_seconds is None:
        notes.append(
            f"idle time is not available on {sys.platform}; 'only when idle' has no effect"
        )
    if settings.get("pause_programs") and situation.programs is None:
        notes.append(
            f"running programs cannot be listed on {sys.platform}; that rule has no effect"
        )
    return notes
