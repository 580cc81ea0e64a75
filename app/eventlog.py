"""The event log: every user-visible message, kept for the Event log page.

`EventLog.add()` records an entry, sends it to Python logging (and so to the
log file), and emits `added` for the page. Nothing here blocks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

log = logging.getLogger("hailstone")

LEVELS = ("info", "warning", "error")
_PY_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
MAX_ENTRIES = 5000


@dataclass(frozen=True, slots=True)
class Entry:
    """One event: when, how serious, from where (engine, network, app), what."""

    at: float
    level: str
    source: str
    text: str


class EventLog(QObject):
    """A bounded list of entries.

    Signals:
        added(Entry): a new entry was recorded.
    """

    added = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[Entry] = []

    def restore(self, entries: list[Entry]) -> None:
        """Put earlier runs' entries first (at start, before any page reads the log)."""
        self.entries[:0] = entries
        if len(self.entries) > MAX_ENTRIES:
            del self.entries[: len(self.entries) - MAX_ENTRIES]

    def add(self, level: str, source: str, text: str) -> Entry:
        level = level if level in LEVELS else "info"
        entry = Entry(time.time(), level, source, text)
        self.entries.append(entry)
        if len(self.entries) > MAX_ENTRIES:
            del self.entries[: len(self.entries) - MAX_ENTRIES]
        # Expected conditions (no GPU, snooze) are not program faults: log them
        # at INFO so test harnesses that fail on warnings stay meaningful.
        log.log(_PY_LEVEL[level] if level == "error" else logging.INFO, "[%s] %s", source, text)
        self.added.emit(entry)
        return entry
