"""Fetches that failed, and when to try them again.

A CID whose fetch failed (a timeout, no peer serving it) is not fetched again
before `base_s * 2**(failures - 1)` seconds (at most `max_s`); after `give_up`
failures a peer's head no longer waits for it (it is still fetched when announced
once its backoff passed). The table is bounded (the oldest failure is forgotten
first, cachetools' FIFOCache). Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cachetools import FIFOCache

FETCH_BACKOFF_S = 5.0
FETCH_BACKOFF_MAX_S = 600.0
FETCH_GIVE_UP = 3
MAX_REMEMBERED = 50_000


class FetchBackoff:
    """`failed(cid)` / `succeeded(cid)` after each fetch; `due(cid)` before the next.

    Args:
        base_s, max_s: the first wait and the longest.
        give_up: failures after which `still_trying` says no.
        max_remembered: failures kept.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        base_s: float = FETCH_BACKOFF_S,
        max_s: float = FETCH_BACKOFF_MAX_S,
        give_up: int = FETCH_GIVE_UP,
        max_remembered: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.give_up = give_up
        self._clock = clock
        self._lock = threading.Lock()
        # cid -> (when it may be fetched again, failures so far)
        self._failed: FIFOCache[str, tuple[float, int]] = FIFOCache(max_remembered)

    def failed(self, cid: str) -> float:
        """Note a failed fetch; returns the seconds until it is due again."""
        with self._lock:
            _, failures = self._failed.get(cid, (0.0, 0))
            delay = min(self.max_s, self.base_s * 2**failures)
            self._failed[cid] = (self._clock() + delay, failures + 1)
            return delay

    def succeeded(self, cid: str) -> None:
        with self._lock:
            self._failed.pop(cid, None)

    def due(self, cid: str) -> bool:
        """Never failed, or its backoff has passed."""
        with self._lock:
            entry = self._failed.get(cid)
        return entry is None or entry[0] <= self._clock()

    def still_trying(self, cid: str) -> bool:
        """Fewer than `give_up` failures (a head waits for it)."""
        with self._lock:
            return self._failed.get(cid, (0.0, 0))[1] < self.give_up
