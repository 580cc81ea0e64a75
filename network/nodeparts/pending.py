"""Records that arrived before what they depend on, indexed by what they wait for.

A record signed by a node key whose delegation we do not hold yet, or a check,
dispute or re-check of a work record we do not hold yet, is valid or not only once
that arrives. It waits here under one key: ("node", node key) or ("work", work CID).
When a delegation or work record is accepted, only the records waiting on it are
taken out and validated again (a backlog of records no delegation will ever
authorise costs nothing per accepted record). Each keeps its parsed form, so its
signature is checked once.

Not thread-safe: the record store's lock guards it.
"""

from __future__ import annotations

from dataclasses import dataclass

from network.records import SignedRecord

# What a pending record waits on: ("node", node key) or ("work", work CID); None when
# not known (taken out whenever any delegation or work record arrives).
WaitKey = tuple[str, object]


@dataclass(frozen=True, slots=True)
class Waiting:
    """One pending record: its bytes, who sent it, since when (time.monotonic()),
    what it waits on, and its parsed, signature-checked form."""

    data: bytes
    source: str
    since: float
    key: WaitKey | None
    signed: SignedRecord


class PendingRecords:
    """At most `limit` waiting records by CID, indexed by their wait key."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._by_cid: dict[str, Waiting] = {}
        self._by_key: dict[WaitKey | None, set[str]] = {}

    def __len__(self) -> int:
        return len(self._by_cid)

    def __contains__(self, cid: object) -> bool:
        return cid in self._by_cid

    def add(self, cid: str, waiting: Waiting) -> bool:
        """Hold `waiting`; False (nothing held) when `limit` records already wait."""
        if cid in self._by_cid:
            return True
        if len(self._by_cid) >= self._limit:
            return False
        self._by_cid[cid] = waiting
        self._by_key.setdefault(waiting.key, set()).add(cid)
        return True

    def discard(self, cid: str) -> None:
        waiting = self._by_cid.pop(cid, None)
        if waiting is not None:
            self._unindex(cid, waiting.key)

    def take(self, arrived: set[WaitKey]) -> list[Waiting]:
        """Remove and return the records waiting on any key in `arrived`, and those
        whose wait is not known."""
        cids: set[str] = set()
        for key in (*arrived, None):
            cids |= self._by_key.pop(key, set())
        return [self._by_cid.pop(c) for c in sorted(cids)]

    def take_older_than(self, since: float) -> list[Waiting]:
        """Remove and return the records waiting since before `since`."""
        old = [c for c, w in self._by_cid.items() if w.since < since]
        taken = [self._by_cid.pop(c) for c in old]
        for cid, waiting in zip(old, taken, strict=True):
            self._unindex(cid, waiting.key)
        return taken

    def _unindex(self, cid: str, key: WaitKey | None) -> None:
        cids = self._by_key.get(key)
        if cids is not None:
            cids.discard(cid)
            if not cids:
                del self._by_key[key]
