"""Others' evidence, fetched ahead of the compute loop.

A spot-check or an audit needs the leaves of someone else's work record, which
live in IPFS and may take seconds (or a timeout) to arrive. The compute loop
must never wait for that (ARCHITECTURE: no blocking IPFS call on the compute
path), so it asks `EvidenceFetcher.result(cid)`: the leaves when they are here,
None when they could not be had (unreachable, or not matching the record's
root), else `PENDING`, and the fetch is queued for the fetcher's own thread
(`ahead` at a time; `held` results kept until used). Thread-safe.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from collections.abc import Callable

from cachetools import LRUCache

log = logging.getLogger("hailstone.node")

# Fetches queued at a time, and results held until the compute loop takes them.
EVIDENCE_AHEAD = 2
MAX_EVIDENCE_HELD = 32
# The fetcher thread with nothing to do waits this long (woken by a request or stop()).
IDLE_WAIT_S = 5.0


class Pending(enum.Enum):
    PENDING = "pending"


PENDING = Pending.PENDING

Leaves = list[bytes]


class EvidenceFetcher:
    """Fetches evidence on its own thread for whoever asks `result()`.

    Args:
        fetch: work CID -> its leaves, or None when they cannot be had; may block
            (an IPFS get with its deadline). Runs on the fetcher's thread only.
        ahead: fetches queued or running at a time.
        held: results kept until taken.
    """

    def __init__(
        self,
        fetch: Callable[[str], Leaves | None],
        *,
        ahead: int = EVIDENCE_AHEAD,
        held: int = MAX_EVIDENCE_HELD,
    ) -> None:
        self._fetch = fetch
        self._ahead = ahead
        self._lock = threading.Lock()
        self._results: LRUCache[str, Leaves | None] = LRUCache(held)
        self._asked: set[str] = set()
        self._wanted: queue.Queue[str | None] = queue.Queue()  # None: stop() wakes it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hailstone-evidence", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        self._stop.set()
        self._wanted.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def result(self, cid: str) -> Leaves | None | Pending:
        """The leaves of work `cid` once fetched (taken: a second call asks again),
        None when they could not be had, else PENDING (and the fetch is queued)."""
        with self._lock:
            if cid in self._results:
                return self._results.pop(cid)
            if cid not in self._asked and len(self._asked) < self._ahead:
                self._asked.add(cid)
                self._wanted.put(cid)
        return PENDING

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                cid = self._wanted.get(timeout=IDLE_WAIT_S)
            except queue.Empty:
                continue
            if cid is None:
                continue
            try:
                leaves = self._fetch(cid)
            except Exception:  # noqa: BLE001 - the thread must outlive anything a peer sends
                log.exception("fetching the evidence of %s failed", cid)
                leaves = None
            with self._lock:
                self._results[cid] = leaves
                self._asked.discard(cid)
