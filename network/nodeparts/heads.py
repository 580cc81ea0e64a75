"""Heads: what we hold, published in pages; what each peer holds, and how far we follow.

Our head lists every record CID we hold in `wire.HEAD_PAGES` page objects and an
index of their CIDs, and beside each page a *bundle* of the records it lists with
an index of those (PROTOCOL §8, "Bundles"); `our_head(cids, records_of)` says which
of those objects changed since the last time (only they are added to IPFS again),
the head's CID and the bundle index's. The node keeps its CIDs placed in their pages
as records arrive (`PageLists`, in the record store) and calls `our_head_of_pages`;
a page that lists what it listed last time is not encoded or hashed again. For each
peer, `HeadBook` remembers its last head that we hold completely and the pages
of it we hold, so an unchanged head costs nothing and a changed one only its new
pages. A page is content-addressed, so one that is also ours, or one we once held
every record of, is held whoever lists it: it is not fetched again from each peer
(`our_page`, `whole_page`). Thread-safe (the network loop publishes, fetcher
threads follow peers).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cachetools import FIFOCache

from network import wire
from network.ipfs import cid_for_bytes

# Pages we held every record of, remembered by CID (64 per head, so this covers the
# pages of 64 different heads).
MAX_WHOLE_PAGES = 4096


@dataclass(frozen=True, slots=True)
class OurHead:
    """Our head now: the objects to add (changed pages and bundles, new indexes), its
    CID and its bundle index's ("" without bundles), and the record CIDs it lists that
    the last one did not (what it acknowledges, PROTOCOL §8 "Acknowledgements")."""

    head_cid: str
    count: int
    new_objects: tuple[bytes, ...]
    bundles_cid: str = ""
    added: tuple[str, ...] = ()
    # Objects of the last head that this one no longer names (pages and bundles that
    # changed, the old indexes): served a while longer, then removed (blockgc.py).
    retired: tuple[str, ...] = ()


class PageLists:
    """The CIDs each of our head's pages lists (`wire.head_page_lists`), kept sorted
    as records arrive.

    Building them from the ledger's CIDs for each head read every CID from SQLite and
    hashed each for its page: with 20,000 fresh accounts held (anyone can sign those)
    that was most of a head's cost, every head interval (bench/fresh_accounts.py).
    Here each CID is placed once, when the record store takes it. Not thread-safe:
    its holder (the record store) guards it with its lock.
    """

    def __init__(self) -> None:
        self._pages: list[list[str]] = [[] for _ in range(wire.HEAD_PAGES)]

    def add(self, cid: str) -> None:
        page = self._pages[wire.page_of(cid)]
        i = bisect.bisect_left(page, cid)
        if i == len(page) or page[i] != cid:
            page.insert(i, cid)

    def lists(self) -> list[list[str]]:
        """A copy of every page's sorted CIDs."""
        return [list(p) for p in self._pages]


class HeadBook:
    """Our published pages, and each peer's head as far as we hold it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._my_pages: list[str] = []
        self._my_lists: dict[str, list[str]] = {}  # our page CID -> the CIDs it lists
        self._whole_pages: FIFOCache[str, None] = FIFOCache(MAX_WHOLE_PAGES)
        self._my_bundles: list[str] = []
        self._my_head = ""
        self._my_bundle_index = ""
        self._forgotten: set[str] = set()  # our objects from before a forget_ours()
        self._peer_heads: dict[str, str] = {}
        self._peer_pages: dict[str, set[str]] = {}
        self._complete = 0

    # -- ours ------------------------------------------------------------------------

    def our_head(
        self,
        cids: list[str],
        records_of: Callable[[list[str]], list[bytes]] | None = None,
    ) -> OurHead:
        """Our head for the record CIDs `cids`, and what changed since the last call.

        With `records_of` (the bytes of the records a list of CIDs names, in its
        order), a bundle of each changed page is made too. The caller adds
        `new_objects` to IPFS and then announces `head_cid`; if the add fails it
        calls `forget_ours()`, so everything is offered again.
        """
        return self.our_head_of_pages(wire.head_page_lists(cids), records_of)

    def our_head_of_pages(
        self,
        lists: list[list[str]],
        records_of: Callable[[list[str]], list[bytes]] | None = None,
    ) -> OurHead:
        """`our_head` for CIDs already placed in their pages (`PageLists.lists()`)."""
        with self._lock:
            old_pages, old_bundles = self._my_pages, self._my_bundles
            old_lists = self._my_lists
        # A page that lists what it listed last time keeps its CID: only changed
        # pages are encoded and hashed again.
        pages: dict[int, bytes] = {}
        page_cids: list[str] = []
        for i, page in enumerate(lists):
            if i < len(old_pages) and old_lists.get(old_pages[i]) == page:
                page_cids.append(old_pages[i])
            else:
                pages[i] = wire.encode_cid_list(page)
                page_cids.append(cid_for_bytes(pages[i]))
        index = wire.encode_head_index(page_cids)
        head_cid = cid_for_bytes(index)
        changed = [
            i
            for i, page_cid in enumerate(page_cids)
            if i >= len(old_pages) or old_pages[i] != page_cid
        ]
        new = [pages[i] for i in changed]
        added: list[str] = []
        for i in changed:
            before = set(old_lists.get(old_pages[i], ())) if i < len(old_pages) else set()
            added.extend(cid for cid in lists[i] if cid not in before)
        bundle_cids: list[str] = []
        bundle_index = b""
        if records_of is not None:
            # A bundle changes exactly when its page does: only those are made again.
            bundle_cids = list(old_bundles) if len(old_bundles) == len(lists) else [""] * len(lists)
            changed_set = set(changed)
            for i in range(len(lists)):
                if i in changed_set or not bundle_cids[i]:
                    # (no more records read than could fit: a page may list 16,000)
                    wanted = lists[i][: wire.BUNDLE_MAX_BYTES // wire.MIN_BUNDLED_RECORD_BYTES]
                    bundle = wire.encode_bundle(records_of(wanted))
                    bundle_cids[i] = cid_for_bytes(bundle)
                    new.append(bundle)
            bundle_index = wire.encode_head_index(bundle_cids)
        bundles_cid = cid_for_bytes(bundle_index) if bundle_index else ""
        with self._lock:
            if head_cid != self._my_head:
                new.append(index)
            if bundles_cid and bundles_cid != self._my_bundle_index:
                new.append(bundle_index)
            before = {*self._my_pages, *self._my_bundles, self._my_head,
                      self._my_bundle_index, *self._forgotten}
            now = {*page_cids, *bundle_cids, head_cid, bundles_cid}
            retired = tuple(sorted(before - now - {""}))
            self._forgotten = set()
            self._my_pages = page_cids
            self._my_lists = dict(zip(page_cids, lists, strict=True))
            self._my_bundles = bundle_cids
            self._my_head = head_cid
            self._my_bundle_index = bundles_cid
        count = sum(len(page) for page in lists)
        return OurHead(head_cid, count, tuple(new), bundles_cid, tuple(added), retired)

    def forget_ours(self) -> None:
        """Offer everything again next time (an add failed); what we published stays
        on disk, so the next head retires it."""
        with self._lock:
            self._forgotten |= {*self._my_pages, *self._my_bundles, self._my_head,
                                self._my_bundle_index}
            self._my_pages = []
            self._my_lists = {}
            self._my_bundles = []
            self._my_head = ""
            self._my_bundle_index = ""

    @property
    def last_head_cid(self) -> str:
        """Our head's CID as last published ("" before the first)."""
        with self._lock:
            return self._my_head

    def names(self, cid: str) -> bool:
        """`cid` is one of our current head's objects: its index, a page, a bundle or
        the bundle index (content-addressed: an empty page is every empty page)."""
        if not cid:
            return False
        with self._lock:
            return (
                cid in (self._my_head, self._my_bundle_index)
                or cid in self._my_lists
                or cid in self._my_bundles
            )

    def our_page(self, page_cid: str) -> list[str] | None:
        """The CIDs our current page `page_cid` lists, or None if it is none of ours."""
        with self._lock:
            return self._my_lists.get(page_cid)

    # -- peers -----------------------------------------------------------------------

    def held_as_ours(self, peer: str, head_cid: str) -> bool:
        """If `head_cid` is our own current head, `peer` lists exactly what we published:
        it is held whole at once and True is returned. A swarm in agreement sends such
        heads."""
        with self._lock:
            if not head_cid or head_cid != self._my_head:
                return False
            self._peer_heads[peer] = head_cid
            self._peer_pages[peer] = set(self._my_pages)
            self._complete += 1
            return True

    def listed_by_ours(self, cids: Iterable[str]) -> list[str]:
        """Those of `cids` that our current head lists (a CID's page is fixed, and each
        page's list is sorted: no more than one lookup each)."""
        with self._lock:
            if len(self._my_pages) != wire.HEAD_PAGES:
                return []
            lists = [self._my_lists[page_cid] for page_cid in self._my_pages]
        found = []
        for cid in cids:
            page = lists[wire.page_of(cid)]
            i = bisect.bisect_left(page, cid)
            if i < len(page) and page[i] == cid:
                found.append(cid)
        return found

    def note_whole_page(self, page_cid: str) -> None:
        """We hold every record page `page_cid` lists (none refused or given up)."""
        with self._lock:
            self._whole_pages[page_cid] = None

    def whole_page(self, page_cid: str) -> bool:
        with self._lock:
            return page_cid in self._whole_pages

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
