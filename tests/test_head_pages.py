"""Our head's pages kept as records arrive: the same head as built from every CID.

`PageLists` places each CID in its page once (the record store does it as records
arrive) and `HeadBook.our_head_of_pages` encodes only the pages that changed; the
head, its pages, bundles, acknowledgements and retired objects must be exactly what
`our_head` builds from the whole CID list, after any sequence of arrivals.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from network import wire
from network.ipfs import cid_for_bytes
from network.nodeparts.heads import HeadBook, PageLists


def _cid(i: int) -> str:
    return cid_for_bytes(f"record {i}".encode())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3000), max_size=40), min_size=1, max_size=6))
def test_pages_kept_as_records_arrive_give_the_head_built_from_every_cid(rounds) -> None:
    pages, incremental, scratch = PageLists(), HeadBook(), HeadBook()
    held: set[str] = set()
    data = {_cid(i): f"record {i}".encode() for r in rounds for i in r}
    records_of = lambda cids: [data[c] for c in cids]  # noqa: E731
    for arrivals in rounds:
        for i in arrivals:
            pages.add(_cid(i))
            pages.add(_cid(i))  # (a record seen twice is listed once)
            held.add(_cid(i))
        assert pages.lists() == wire.head_page_lists(sorted(held))
        got = incremental.our_head_of_pages(pages.lists(), records_of)
        want = scratch.our_head(sorted(held), records_of)
        assert got == want
        assert got.count == len(held)


def test_an_unchanged_page_is_not_offered_again() -> None:
    pages, book = PageLists(), HeadBook()
    for i in range(200):
        pages.add(_cid(i))
    first = book.our_head_of_pages(pages.lists())
    assert len(first.new_objects) == wire.HEAD_PAGES + 1  # every page and the index
    pages.add(_cid(1000))
    second = book.our_head_of_pages(pages.lists())
    assert len(second.new_objects) == 2  # the one changed page and the new index
    assert second.added == (_cid(1000),)
    assert book.our_head_of_pages(pages.lists()).new_objects == ()
