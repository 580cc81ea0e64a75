"""Fixed-size NumPy ring buffers for the live throughput plots (no Qt here).

The dashboard appends one sample per plot tick (2-4 Hz) and hands the ordered
views straight to `PlotDataItem.setData`; nothing grows, so a week-long run
uses the same memory as a minute-long one.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """The last `capacity` (t, value) pairs, oldest first on read.

    Args:
        capacity: how many samples to keep (> 0).
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = int(capacity)
        self._t = np.zeros(self.capacity, dtype=np.float64)
        self._v = np.zeros(self.capacity, dtype=np.float64)
        self._next = 0  # index the next sample goes to
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, t: float, value: float) -> None:
        self._t[self._next] = t
        self._v[self._next] = value
        self._next = (self._next + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def clear(self) -> None:
        self._next = 0
        self._size = 0

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(times, values), oldest first; copies, safe to keep."""
        if self._size < self.capacity:
            return self._t[: self._size].copy(), self._v[: self._size].copy()
        order = np.r_[self._next : self.capacity, 0 : self._next]
        return self._t[order], self._v[order]

    def last(self) -> tuple[float, float] | None:
        if not self._size:
            return None
        i = (self._next - 1) % self.capacity
        return float(self._t[i]), float(self._v[i])


class RateTracker:
    """Per-backend throughput history at two resolutions.

    The engine reports one rate per batch; between reports the last rate is
    held, and it drops to zero once it is older than `stale_s` (paused, resting
    or stopped). `tick(now)` samples every backend into the fine buffer (the
    10-minute view) and, once per `coarse_s`, the mean of that period into the
    coarse buffer (the 24-hour view).

    Args:
        backends: series names, e.g. ("cpu", "gpu").
        fine_s: seconds between fine samples (the plot timer's interval).
        fine_span_s: how much history the fine view keeps.
        coarse_s: seconds per coarse sample.
        coarse_span_s: how much history the coarse view keeps.
        stale_s: a held rate older than this counts as zero.
    """

    def __init__(
        self,
        backends: tuple[str, ...] = ("cpu", "gpu"),
        *,
        fine_s: float = 0.5,
        fine_span_s: float = 600.0,
        coarse_s: float = 60.0,
        coarse_span_s: float = 86400.0,
        stale_s: float = 5.0,
    ) -> None:
        self.backends = backends
        self.fine_s = fine_s
        self.coarse_s = coarse_s
        self.stale_s = stale_s
        self.fine = {b: RingBuffer(int(round(fine_span_s / fine_s))) for b in backends}
        self.coarse = {b: RingBuffer(int(round(coarse_span_s / coarse_s))) for b in backends}
        self._held: dict[str, tuple[float, float, float]] = {}  # rate, at, stale after
        self._acc: dict[str, list[float]] = {b: [] for b in backends}
        self._coarse_start: float | None = None

    def report(
        self, backend: str, numbers_per_second: float, now: float, batch_s: float = 0.0
    ) -> None:
        """A fresh rate from the engine; it is held for max(stale_s, 3 batch times)."""
        if backend not in self.fine:
            return  # "reference" and friends are not plotted
        self._held[backend] = (float(numbers_per_second), now, max(self.stale_s, 3 * batch_s))

    def current(self, backend: str, now: float) -> float:
        held = self._held.get(backend)
        if held is None:
            return 0.0
        rate, at, stale = held
        return rate if now - at <= stale else 0.0

    def total(self, now: float) -> float:
        return sum(self.current(b, now) for b in self.backends)

    def tick(self, now: float) -> None:
        """Take one sample of every series."""
        if self._coarse_start is None:
            self._coarse_start = now
        for b in self.backends:
            v = self.current(b, now)
            self.fine[b].append(now, v)
            self._acc[b].append(v)
        if now - self._coarse_start >= self.coarse_s:
            for b in self.backends:
                acc = self._acc[b]
                self.coarse[b].append(now, sum(acc) / len(acc) if acc else 0.0)
                acc.clear()
            self._coarse_start = now

    def restore_coarse(self, backend: str, samples: list[tuple[float, float]]) -> None:
        """Earlier runs' per-period means (monotonic times, oldest first) for the long view.

        A gap longer than two periods (the app was closed) gets zero points at both
        ends, so the plot drops to zero there instead of joining across it.
        """
        if backend not in self.coarse:
            return
        buf = self.coarse[backend]
        last = None
        for t, v in samples:
            if last is not None and t - last > 2 * self.coarse_s:
                buf.append(last + self.coarse_s, 0.0)
                buf.append(t - self.coarse_s, 0.0)
            buf.append(t, v)
            last = t
        if last is not None:
            buf.append(last + self.coarse_s, 0.0)
