"""Statistics that outlive a restart: throughput per minute, per-unit compute time,
finished units and the event log, in one SQLite file in the profile (no Qt here).

The GUI thread adds to in-memory buffers (cheap) and `flush()` writes them in one
transaction every `FLUSH_INTERVAL_S` and at quit, so a crash loses at most that
much history and the GUI never waits on a write per batch. Everything is keyed by
wall-clock time (a restart resets the monotonic clock).

Views: `rates_per_minute` (the 24-hour graph), `totals_by_period` (BOINC-like
days and weeks), `unit_seconds` (a unit resumed across runs counts every run),
`recent_events` (the event log at start).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATS_FILE = "stats.sqlite3"
FLUSH_INTERVAL_S = 30.0
EVENTS_KEPT = 20000  # the oldest events beyond this are dropped at flush
DAY_S = 86400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS minutes (
    minute INTEGER NOT NULL,       -- unix time // 60
    backend TEXT NOT NULL,
    numbers INTEGER NOT NULL,      -- integers computed in that minute (every integer counts)
    busy_s REAL NOT NULL,
    PRIMARY KEY (minute, backend)
);
CREATE TABLE IF NOT EXISTS units (
    params TEXT NOT NULL,
    unit INTEGER NOT NULL,
    busy_s REAL NOT NULL,          -- compute time over every run that worked on it
    finished_at REAL,              -- NULL while unfinished
    numbers INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (params, unit)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    level TEXT NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class PeriodTotal:
    """One bar of the days/weeks view: its start (unix time), numbers and units."""

    start: float
    numbers: int
    units: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    at: float
    level: str
    source: str
    text: str


class StatsStore:
    """The profile's statistics file.

    Args:
        path: the SQLite file (created with its tables when missing).

    A file that cannot be opened or written makes the store keep working in
    memory only (`error` says why); statistics are never worth stopping the app.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.error = ""
        self._minutes: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0])
        self._units: dict[tuple[str, int], float] = defaultdict(float)
        self._finished: dict[tuple[str, int], tuple[float, int]] = {}
        self._events: list[StoredEvent] = []
        self._db: sqlite3.Connection | None = None
        try:
            self._db = sqlite3.connect(self.path, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        log.warning("statistics file %s unusable: %s", self.path, exc)
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db = None

    # -- adding (buffered) -------------------------------------------------------

    def add_numbers(self, backend: str, numbers: int, busy_s: float, at: float) -> None:
        """One computed batch (a unit's or a spot-check's): `numbers` integers in `busy_s`."""
        m = self._minutes[(int(at // 60), backend)]
        m[0] += int(numbers)
        m[1] += float(busy_s)

    def add_unit_time(self, params: str, unit: int, busy_s: float) -> None:
        """Compute time spent on `unit` in this run (added to earlier runs')."""
        self._units[(params, int(unit))] += float(busy_s)

    def unit_finished(self, params: str, unit: int, numbers: int, at: float) -> None:
        self._finished[(params, int(unit))] = (float(at), int(numbers))

    def add_event(self, at: float, level: str, source: str, text: str) -> None:
        self._events.append(StoredEvent(at, level, source, text))

    def flush(self) -> None:
        """Write what was added since the last flush, in one transaction."""
        if self._db is None:
            return
        minutes, self._minutes = self._minutes, defaultdict(lambda: [0, 0.0])
        units, self._units = self._units, defaultdict(float)
        finished, self._finished = self._finished, {}
        events, self._events = self._events, []
        if not (minutes or units or finished or events):
            return
        try:
            with self._db:
                self._db.executemany(
                    "INSERT INTO minutes (minute, backend, numbers, busy_s) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (minute, backend) DO UPDATE SET "
                    "numbers = numbers + excluded.numbers, busy_s = busy_s + excluded.busy_s",
                    [(m, b, int(v[0]), v[1]) for (m, b), v in minutes.items()],
                )
                self._db.executemany(
                    "INSERT INTO units (params, unit, busy_s) VALUES (?, ?, ?) "
                    "ON CONFLICT (params, unit) DO UPDATE SET busy_s = busy_s + excluded.busy_s",
                    [(p, u, s) for (p, u), s in units.items()],
                )
                self._db.executemany(
                    "INSERT INTO units (params, unit, busy_s, finished_at, numbers) "
                    "VALUES (?, ?, 0, ?, ?) ON CONFLICT (params, unit) DO UPDATE SET "
                    "finished_at = excluded.finished_at, numbers = excluded.numbers",
                    [(p, u, at, n) for (p, u), (at, n) in finished.items()],
                )
                self._db.executemany(
                    "INSERT INTO events (at, level, source, text) VALUES (?, ?, ?, ?)",
                    [(e.at, e.level, e.source, e.text) for e in events],
                )
                self._db.execute(
                    "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
                    (EVENTS_KEPT,),
                )
        except sqlite3.Error as exc:
            self._fail(exc)

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- reading (flushed data plus what is still buffered) -----------------------

    def rates_per_minute(self, backend: str, since: float) -> list[tuple[float, float]]:
        """(minute start, mean numbers/s over that minute) since `since`, oldest first."""
        first = int(since // 60)
        totals: dict[int, int] = defaultdict(int)
        if self._db is not None:
            for minute, numbers in self._db.execute(
                "SELECT minute, numbers FROM minutes WHERE backend = ? AND minute >= ?",
                (backend, first),
            ):
                totals[int(minute)] += int(numbers)
        for (minute, b), v in self._minutes.items():
            if b == backend and minute >= first:
                totals[minute] += int(v[0])
        return [(m * 60.0, n / 60.0) for m, n in sorted(totals.items())]

    def unit_seconds(self, params: str, unit: int) -> float:
        """Compute time of `unit` over every run (0 when unknown)."""
        total = self._units.get((params, int(unit)), 0.0)
        if self._db is not None:
            row = self._db.execute(
                "SELECT busy_s FROM units WHERE params = ? AND unit = ?", (params, int(unit))
            ).fetchone()
            if row:
                total += float(row[0])
        return total

    def all_unit_seconds(self, params: str) -> dict[int, float]:
        """unit -> compute time over every run, for every unit of `params` (one query)."""
        out: dict[int, float] = defaultdict(float)
        if self._db is not None:
            for unit, busy in self._db.execute(
                "SELECT unit, busy_s FROM units WHERE params = ?", (params,)
            ):
                out[int(unit)] += float(busy)
        for (p, u), busy in self._units.items():
            if p == params:
                out[u] += busy
        return dict(out)

    def totals_by_period(self, period_s: int, count: int, now: float) -> list[PeriodTotal]:
        """Numbers computed and units finished per period (local days or 7-day weeks).

        The last period contains `now`; periods start at local midnight (weeks on Monday).
        """
        starts = _period_starts(period_s, count, now)
        numbers = [0] * count
        units = [0] * count
        self.flush()
        if self._db is not None:
            for minute, n in self._db.execute(
                "SELECT minute, SUM(numbers) FROM minutes WHERE minute >= ? GROUP BY minute",
                (int(starts[0] // 60),),
            ):
                i = _index(starts, minute * 60.0)
                numbers[i] += int(n)
            for (at,) in self._db.execute(
                "SELECT finished_at FROM units WHERE finished_at >= ?", (starts[0],)
            ):
                units[_index(starts, float(at))] += 1
        return [PeriodTotal(s, numbers[i], units[i]) for i, s in enumerate(starts)]

    def recent_events(self, limit: int) -> list[StoredEvent]:
        """The last `limit` stored events, oldest first."""
        if self._db is None:
            return list(self._events[-limit:])
        rows = self._db.execute(
            "SELECT at, level, source, text FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        stored = [StoredEvent(float(a), str(lv), str(s), str(t)) for a, lv, s, t in reversed(rows)]
        return (stored + self._events)[-limit:]


def _period_starts(period_s: int, count: int, now: float) -> list[float]:
    lt = time.localtime(now)
    midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))
    if period_s >= 7 * DAY_S:
        midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday - lt.tm_wday, 0, 0, 0, 0, 0, -1))
    days = max(1, period_s // DAY_S)
    starts = []
    for i in range(count - 1, -1, -1):
        t = time.localtime(midnight)
        # mktime normalises the day overflow, and local midnights survive DST changes.
        starts.append(time.mktime((t.tm_year, t.tm_mon, t.tm_mday - i * days, 0, 0, 0, 0, 0, -1)))
    return starts


def _index(starts: list[float], at: float) -> int:
    i = 0
    while i + 1 < len(starts) and at >= starts[i + 1]:
        i += 1
    return i
