"""How long peers' new records take to reach us, lately: the claim settle time.

A node that claims a fresh unit waits before computing it, so that the claims of
nodes that chose the same unit at the same moment can arrive (PROTOCOL §8,
"Conflicting claims"). Two seconds cover loopback gossip on an idle machine; at 32
nodes on two cores records took 3 s (median) to 9 s (p95) to arrive, so claims
crossed after the settle and units were computed three times (bench/swarm.py: 50
reports beyond the two each of 64 units needs, most finished within 3 s of the
unit's second report). Claims travel the same gossip as records, so the records'
own delay is the measure: `now - created` of each record a peer's gossip brought
(not fetched ones, which may be old), of the kinds a node signs just before it
sends them (identity records are sent again for as long as the node lives).

Only local pacing: a longer settle delays our own start on a unit, it changes no
rule another node applies. A peer that sends records with old `created` times can
stretch our settle to SETTLE_MAX_S at most (a unit takes minutes in production).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

# Records signed moments before they are first sent (an account or delegation record
# is re-announced to new peers all its life: its `created` says nothing of the delay).
FRESH_KINDS = frozenset(
    {"work", "check", "spotcheck", "dispute", "commit", "beacon", "recheck"}
)
# The settle covers this share of recent deliveries.
QUANTILE = 0.9
# Deliveries older than this are forgotten; fewer than MIN_SAMPLES recent ones: no
# measure (the base settle time holds).
WINDOW_S = 60.0
MIN_SAMPLES = 8
MAX_SAMPLES = 512
# The settle time is never longer than this, whatever the lags.
SETTLE_MAX_S = 10.0


class DeliveryLag:
    """Recent delivery delays of peers' fresh records (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)  # (at, lag)

    def note(self, kind: str, lag_s: float) -> None:
        """A peer's gossip brought a new record of `kind`, `lag_s` after it was made."""
        if kind not in FRESH_KINDS:
            return
        with self._lock:
            self._samples.append((self._clock(), max(0.0, float(lag_s))))

    def quantile(self, q: float = QUANTILE) -> float | None:
        """The `q` quantile of the delays seen in the last WINDOW_S, or None with fewer
        than MIN_SAMPLES of them."""
        with self._lock:
            since = self._clock() - WINDOW_S
            while self._samples and self._samples[0][0] < since:
                self._samples.popleft()
            lags = sorted(lag for _, lag in self._samples)
        if len(lags) < MIN_SAMPLES:
            return None
        return lags[min(len(lags) - 1, int(q * len(lags)))]

    def settle_s(self, base_s: float) -> float:
        """How long a fresh claim settles: `base_s`, or longer while deliveries take
        longer (at most SETTLE_MAX_S); 0 stays 0 (settling turned off)."""
        if base_s <= 0:
            return base_s
        lag = self.quantile()
        if lag is None:
            return base_s
        return max(base_s, min(SETTLE_MAX_S, lag))
