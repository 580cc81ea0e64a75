"""What the headless contributor's compute loop did: counters the metrics read.

`RunStats` is written by `NodeRunner` (the compute thread) and read by the
metrics endpoint (the HTTP server's thread) at scrape time; one lock keeps each
read consistent. Plain values only: the runner knows nothing of Prometheus.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

# Weight of the newest batch in the smoothed rate (exponential moving average).
# Batches last milliseconds (CPU) to 0.25 s (GPU); 0.2 smooths over a few of them.
RATE_SMOOTHING = 0.2
# Longest error text kept (it becomes a metric label).
MAX_ERROR_CHARS = 200
# A backend with no batch for this long shows a rate of 0 (paused, idle, switched off),
# not the last smoothed value.
RATE_STALE_S = 30.0


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """One consistent view of `RunStats`.

    Attributes:
        numbers: integers computed per backend name, every integer of a block counted.
        seconds: compute seconds per backend name (busy time, rest excluded).
        rate: smoothed numbers per second per backend name (busy time); 0 for a
            backend with no batch in the last RATE_STALE_S seconds.
        units_finished: units computed and stored in the ledger by this process.
        blocks_checked: other accounts' blocks recomputed (spot-checks, confirmations).
        checkpoint_at: wall-clock time of the last checkpoint write (0: none yet).
        errors: failures of the compute loop so far.
        last_error: the last failure's text ("" when none).
        last_error_at: its wall-clock time (0: none).
    """

    numbers: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    rate: dict[str, float] = field(default_factory=dict)
    units_finished: int = 0
    blocks_checked: int = 0
    checkpoint_at: float = 0.0
    errors: int = 0
    last_error: str = ""
    last_error_at: float = 0.0


class RunStats:
    """Thread-safe counters of one runner; `snapshot()` reads them all at once."""

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._numbers: dict[str, int] = {}
        self._seconds: dict[str, float] = {}
        self._rate: dict[str, float] = {}
        self._last_batch: dict[str, float] = {}
        self._units = 0
        self._checked = 0
        self._checkpoint_at = 0.0
        self._errors = 0
        self._last_error = ""
        self._last_error_at = 0.0

    def batch(self, backend: str, numbers: int, seconds: float) -> None:
        """A batch of `numbers` integers took `seconds` of compute on `backend`."""
        with self._lock:
            self._numbers[backend] = self._numbers.get(backend, 0) + numbers
            self._seconds[backend] = self._seconds.get(backend, 0.0) + seconds
            if seconds > 0:
                now = numbers / seconds
                old = self._rate.get(backend)
                if old is None or self._clock() - self._last_batch[backend] > RATE_STALE_S:
                    old = None  # after a pause the rate starts afresh
                self._rate[backend] = now if old is None else old + RATE_SMOOTHING * (now - old)
                self._last_batch[backend] = self._clock()

    def checkpoint_written(self) -> None:
        with self._lock:
            self._checkpoint_at = self._clock()

    def unit_finished(self) -> None:
        with self._lock:
            self._units += 1

    def block_checked(self) -> None:
        with self._lock:
            self._checked += 1

    def error(self, message: str) -> None:
        with self._lock:
            self._errors += 1
            self._last_error = message[:MAX_ERROR_CHARS]
            self._last_error_at = self._clock()

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            now = self._clock()
            rate = {
                b: r if now - self._last_batch.get(b, now) <= RATE_STALE_S else 0.0
                for b, r in self._rate.items()
            }
            return StatsSnapshot(
                numbers=dict(self._numbers),
                seconds=dict(self._seconds),
                rate=rate,
                units_finished=self._units,
                blocks_checked=self._checked,
                checkpoint_at=self._checkpoint_at,
                errors=self._errors,
                last_error=self._last_error,
                last_error_at=self._last_error_at,
            )
