"""Where the network loop's time goes: seconds per step, and its longest single step.

The network loop does everything that touches the record store in one thread (gossip,
fetched records, heads, re-announcements, trust duties), so a slow step delays every
message behind it. At 24 nodes on two cores some nodes took gossip records a minute
late while the other nodes of their process did not (bench/swarm.py, per-node
ledgers); this tells which step holds a loop up. Only the network loop's thread
writes and reads it (the status is written from that loop), so it needs no lock.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class LoopTime:
    """Seconds spent per named step, and the longest step with its name."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.spent: Counter[str] = Counter()
        self.longest_s = 0.0
        self.longest = ""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = self._clock()
        try:
            yield
        finally:
            took = self._clock() - start
            self.spent[name] += took
            if took > self.longest_s:
                self.longest_s, self.longest = took, name

    def snapshot(self) -> dict:
        """For the status file: {"spent_s": {step: seconds}, "longest_s", "longest"}."""
        return {
            "spent_s": {k: round(v, 3) for k, v in sorted(self.spent.items())},
            "longest_s": round(self.longest_s, 3),
            "longest": self.longest,
        }
