"""When to compute: idle time, battery, weekly schedule, running programs, snooze.

`decide()` is a pure function of a `Situation` (what the probes saw) and the
settings, so tests pass values in directly. The probes are small per-platform
functions; each returns None when the platform gives no answer, and a rule whose
probe has no answer does not block computing (the caller logs a note once).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psutil

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
    """Seconds since the last keyboard/mouse input, or None where it cannot be known.

    Windows: GetLastInputInfo. macOS: IOHIDSystem's HIDIdleTime (ioreg). Linux:
    the X11 screen-saver extension (libXss) when there is an X display (XWayland
    included), else GNOME's Mutter IdleMonitor over D-Bus (gdbus). Other
    Wayland desktops offer no general API: None.
    """
    if sys.platform == "win32":  # pragma: no cover - Windows only

        class LASTINPUTINFO(ctypes.Structure):
            _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]

        info = LASTINPUTINFO()
        info.cbSize = ctypes.sizeof(info)
        if not ctypes.windll.user32.GetLastInputInfo(ctypes.byref(info)):
            return None
        return (ctypes.windll.kernel32.GetTickCount() - info.dwTime) / 1000.0
    if sys.platform == "darwin":  # pragma: no cover - macOS only
        out = _run(["ioreg", "-c", "IOHIDSystem", "-d", "4"])
        return None if out is None else parse_ioreg_idle(out)
    if sys.platform.startswith("linux"):
        seconds = x11_idle_seconds()
        if seconds is None:
            out = _run(
                [
                    "gdbus",
                    "call",
                    "--session",
                    "--dest",
                    "org.gnome.Mutter.IdleMonitor",
                    "--object-path",
                    "/org/gnome/Mutter/IdleMonitor/Core",
                    "--method",
                    "org.gnome.Mutter.IdleMonitor.GetIdletime",
                ]
            )
            seconds = None if out is None else parse_gdbus_idle(out)
        return seconds
    return None


def _run(args: list[str]) -> str | None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_ioreg_idle(text: str) -> float | None:
    """Seconds from ioreg's `"HIDIdleTime" = <nanoseconds>` line."""
    match = re.search(r'"HIDIdleTime"\s*=\s*(\d+)', text)
    return int(match.group(1)) / 1e9 if match else None


def parse_gdbus_idle(text: str) -> float | None:
    """Seconds from gdbus's `(uint64 12345,)` reply (milliseconds)."""
    match = re.search(r"\(uint64 (\d+),\)", text)
    return int(match.group(1)) / 1000.0 if match else None


class _XScreenSaverInfo(ctypes.Structure):
    _fields_ = [
        ("window", ctypes.c_ulong),
        ("state", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("til_or_since", ctypes.c_ulong),
        ("idle", ctypes.c_ulong),
        ("event_mask", ctypes.c_ulong),
    ]


def x11_idle_seconds(display: str | None = None) -> float | None:
    """Idle seconds from the X server's screen-saver extension, or None without one."""
    name = display if display is not None else os.environ.get("DISPLAY")
    if not name:
        return None
    try:
        xlib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        xss = ctypes.CDLL(ctypes.util.find_library("Xss") or "libXss.so.1")
    except OSError:
        return None
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XDefaultRootWindow.restype = ctypes.c_ulong
    xlib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    xlib.XFree.argtypes = [ctypes.c_void_p]
    xss.XScreenSaverQueryExtension.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_int),
    ]
    xss.XScreenSaverAllocInfo.restype = ctypes.POINTER(_XScreenSaverInfo)
    xss.XScreenSaverQueryInfo.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.POINTER(_XScreenSaverInfo),
    ]
    dpy = xlib.XOpenDisplay(name.encode())
    if not dpy:
        return None
    try:
        event_base, error_base = ctypes.c_int(), ctypes.c_int()
        if not xss.XScreenSaverQueryExtension(
            dpy, ctypes.byref(event_base), ctypes.byref(error_base)
        ):
            return None
        info = xss.XScreenSaverAllocInfo()
        if not info:
            return None
        try:
            if not xss.XScreenSaverQueryInfo(dpy, xlib.XDefaultRootWindow(dpy), info):
                return None
            return info.contents.idle / 1000.0
        finally:
            xlib.XFree(info)
    finally:
        xlib.XCloseDisplay(dpy)


def on_battery() -> bool | None:
    """True when running on battery, False on mains, None where unknown (no battery).

    psutil reads each platform's own source (Linux sysfs, Windows
    GetSystemPowerStatus, macOS IOKit's power sources), so macOS is covered too.
    """
    try:
        battery = psutil.sensors_battery()
    except (AttributeError, NotImplementedError, OSError, RuntimeError):
        return None  # a platform psutil has no battery sensor for
    return battery_state(battery)


def battery_state(battery: Any) -> bool | None:
    """On battery (True), on mains (False) or unknown (None) from psutil's reading
    (`psutil.sensors_battery()`: None without a battery)."""
    if battery is None or battery.power_plugged is None:
        return None
    return not battery.power_plugged


def running_programs() -> frozenset[str] | None:
    """Names of running programs (psutil: Linux, Windows, macOS, BSD), or None where
    processes cannot be listed."""
    try:
        names = {
            p.info["name"]
            for p in psutil.process_iter(["name"])
            if p.info.get("name")  # None: a process we may not inspect
        }
    except (psutil.Error, OSError):
        return None
    return frozenset(names)


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
