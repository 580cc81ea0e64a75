"""Per-peer message rate limits: a token bucket for each peer, the table bounded.

A peer may send `rate_per_s` messages a second with bursts of `burst`; the
table holds `max_peers` buckets and forgets the least recently heard peer first
(cachetools' LRUCache), so a flood of peer ids cannot grow it. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache

# Messages a single peer may send per second (token bucket, with a burst).
PEER_RATE_PER_S = 200.0
PEER_BURST = 1000.0
# How many peers are rate-limited at once (the least recently heard is forgotten).
MAX_PEERS_TRACKED = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class PeerRateLimiter:
    """`allow(peer)` takes a token from the peer's bucket (False: over its rate).

    Args:
        rate_per_s: tokens added per second.
        burst: the bucket's size (a new peer starts full).
        max_peers: buckets kept.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        rate_per_s: float = PEER_RATE_PER_S,
        burst: float = PEER_BURST,
        max_peers: int = MAX_PEERS_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_peers < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and max_peers >= 1 are needed")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: LRUCache[str, _Bucket] = LRUCache(max_peers)

    def allow(self, peer: str, cost: float = 1.0) -> bool:
        """Take `cost` tokens (a batch of records costs one per record) if the peer
        has them; nothing is taken when it has not."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(peer)
            if bucket is None:
                bucket = self._buckets[peer] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate_per_s)
            bucket.stamp = now
            if bucket.tokens < cost:
                return False
            bucket.tokens -= cost
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)
