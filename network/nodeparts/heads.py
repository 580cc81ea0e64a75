"""Heads: what we hold, published in pages; what each peer holds, and how far we follow.

Our head lists every record CID we hold in `wire.HEAD_PAGES` page objects and an
index of their CIDs; `our_head(cids)` says which of those objects changed since
the last time (only they are added to IPFS again) and the head's CID. For each
peer, `HeadBook` remembers its last head that we hold completely and the pages
of it we hold, so an unchanged head costs nothing and a changed one only its new
pages. Thread-safe (the network loop publishes, fetcher threads follow peers).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from network import wire
from network.ipfs import cid_for_bytes


@dataclass(frozen=True, slots=True)
class OurHead:
    """Our head now: the objects to add (changed pages, a new index) and its CID."""

    head_cid: str
    count: int
    new_objects: tuple[bytes, ...]


class HeadBook:
    """Our published pages, and each peer's head as far as we hold it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._my_pages: list[str] = []
        self._my_head = ""
        self._peer_heads: dict[str, str] = {}
        self._peer_pages: dict[str, set[str]] = {}
        self._complete = 0

    # -- ours ------------------------------------------------------------------------

    def our_head(self, cids: list[str]) -> OurHead:
        """Our head for the record CIDs `cids`, and what changed since the last call.

        The caller adds `new_objects` to IPFS and then announces `head_cid`; if the
        add fails it calls `forget_ours()`, so everything is offered again.
        """
        pages = wire.head_pages(cids)
        page_cids = [cid_for_bytes(p) for p in pages]
        index = wire.encode_head_index(page_cids)
        head_cid = cid_for_bytes(index)
        with self._lock:
            new = [
                page
                for i, (page, page_cid) in enumerate(zip(pages, page_cids, strict=True))
                if i >= len(self._my_pages) or self._my_pages[i] != page_cid
            ]
            if head_cid != self._my_head:
                new.append(index)
            self._my_pages = page_cids
            self._my_head = head_cid
        return OurHead(head_cid, len(cids), tuple(new))

    def forget_ours(self) -> None:
        with self._lock:
            self._my_pages = []
            self._my_head = ""

    @property
    def last_head_cid(self) -> str:
        """Our head's CID as last published ("" before the first)."""
        with self._lock:
            return self._my_head

    # -- peers -----------------------------------------------------------------------

    def holds(self, peer: str, head_cid: str) -> bool:
        """We hold everything `head_cid` of `peer` lists (nothing to fetch)."""
        with self._lock:
            return self._peer_heads.get(peer) == head_cid

    def pages_held(self, peer: str) -> set[str]:
        with self._lock:
            return set(self._peer_pages.get(peer, ()))

    def followed(self, peer: str, head_cid: str, held: set[str], complete: bool) -> None:
        """A head of `peer` was read: `held` are its pages we hold; `complete` when
        that is all of them."""
        with self._lock:
            self._peer_pages[peer] = set(held)
            if complete:
                self._peer_heads[peer] = head_cid
                self._complete += 1

    @property
    def heads_completed(self) -> int:
        """How many peer heads we came to hold completely (sync's first milestone)."""
        with self._lock:
            return self._complete

    def forget_peers_except(self, connected: Iterable[str]) -> None:
        keep = set(connected)
        with self._lock:
            for table in (self._peer_heads, self._peer_pages):
                for peer in [p for p in table if p not in keep]:
                    del table[peer]
