"""Which peers' heads to read, and when (PROTOCOL §8, "Heads"; issue #12).

Reading every changed head a node hears was most of a swarm's IPFS gets
(bench/swarm.py at 32 nodes: 23,000 page gets against 3,700 record gets) and,
through bitswap asking every connected peer for each block, much of its CPU. Gossip
delivers nearly every record within a second or two, so most of those reads found
nothing new. A head of a peer (one we do not hold completely) is now read:

- at once when it counts HEAD_AHEAD_AT_ONCE more records than we hold (a node
  catching up, a late joiner);
- after HEAD_GRACE_S when it still counts more than we hold (what its sender
  gossiped with it has arrived by then, so the surplus is likely a record we lack);
- as a *backstop*, the head unread longest, one every BACKSTOP_INTERVAL_S: a record
  gossip lost on both sides of equal counts is still found;
- in part, to acknowledge our outbox: while some of our records wait for a peer's
  head to list them, one head counting as many records as ours per
  ACK_READ_INTERVAL_S has its index and only the pages where those records would be
  read (`ACK`), not the rest.

A count is the peer's word: a head that lies high is read (as every head was before);
one that lies low waits for the backstop. Thread-safe: the network loop decides,
fetcher threads report what a read found.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cachetools import FIFOCache

READ = "read"  # the whole head: every page we do not hold, what they list that we lack
BACKSTOP = "backstop"  # a READ as the backstop: the head unread longest
ACK = "ack"  # the index and the pages where our waiting records would be, nothing else

HEAD_GRACE_S = 3.0
HEAD_AHEAD_AT_ONCE = 16
BACKSTOP_INTERVAL_S = 5.0
ACK_READ_INTERVAL_S = 1.0


class HeadReadPolicy:
    """Per peer: the record count its newest head announced and since when a head of
    it has gone unread; decides which to read (`on_head`, `due`)."""

    def __init__(self, max_peers: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._count: FIFOCache[str, int] = FIFOCache(max_peers)
        self._unread_since: FIFOCache[str, float] = FIFOCache(max_peers)
        self._last_ack = float("-inf")
        self._last_backstop = float("-inf")

    def on_head(self, peer: str, count: int, ours: int) -> str | None:
        """A head of `peer` we do not hold completely came, counting `count` records
        (we hold `ours`): READ if it is to be read at once, else None (`due` decides
        later)."""
        with self._lock:
            self._count[peer] = count
            if peer not in self._unread_since:
                self._unread_since[peer] = self._clock()
        return READ if count - ours >= HEAD_AHEAD_AT_ONCE else None

    def held(self, peer: str) -> None:
        """We hold `peer`'s newest head completely: nothing of it is unread."""
        with self._lock:
            self._unread_since.pop(peer, None)

    def read_in_part(self, peer: str) -> None:
        """A read of `peer`'s head left something to fetch: it counts as unread from
        now (the read is repeated by whoever began it; the backstop comes later)."""
        with self._lock:
            self._unread_since[peer] = self._clock()

    def unread(self) -> list[str]:
        with self._lock:
            return list(self._unread_since)

    def due(
        self, ours: int, outbox_waits: Callable[[], bool], skip: Callable[[str], bool]
    ) -> list[tuple[str, str]]:
        """The (peer, READ, BACKSTOP or ACK) reads due now, given `ours` records held
        (BACKSTOP is read as READ is; it names the rule). `skip(peer)` leaves a peer
        out (its head held, or a read of it already queued); `outbox_waits()` is
        asked only when an ACK read could be due."""
        now = self._clock()
        with self._lock:
            aged = sorted(
                (since, peer)
                for peer, since in self._unread_since.items()
                if now - since >= HEAD_GRACE_S
            )
            counts = {peer: self._count.get(peer, 0) for _, peer in aged}
        aged = [(since, peer) for since, peer in aged if not skip(peer)]
        due = [(peer, READ) for _, peer in aged if counts[peer] > ours]
        rest = [peer for _, peer in aged if counts[peer] <= ours]  # (oldest first)
        if rest and now - self._last_backstop >= BACKSTOP_INTERVAL_S:
            with self._lock:
                self._last_backstop = now
            due.append((rest.pop(0), BACKSTOP))
        as_full = [peer for peer in rest if counts[peer] == ours]
        if as_full and now - self._last_ack >= ACK_READ_INTERVAL_S and outbox_waits():
            with self._lock:
                self._last_ack = now
            due.append((as_full[0], ACK))
        return due
