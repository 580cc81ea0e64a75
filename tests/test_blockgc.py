"""Head objects removed from the IPFS store once no longer needed (blockgc.py), and
which of our objects a new head retires (heads.py). Logic over the in-memory
IpfsNode; tests/test_head_objects_loopback.py runs it on real kubo nodes."""

from __future__ import annotations

import os

import pytest

from network import wire
from network.ipfs import IpfsError, cid_for_bytes
from network.ipfs.memory import MemorySwarm
from network.nodeparts import blockgc
from network.nodeparts.blockgc import GRACE_S, BlockCollector
from network.nodeparts.heads import HeadBook


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(n: int):
    node = MemorySwarm().node("me")
    return node, [node.add(os.urandom(40)) for _ in range(n)]


def test_objects_are_removed_only_after_the_grace_and_never_one_to_keep() -> None:
    node, cids = _store(4)
    clock = Clock()
    keep = {cids[1]}
    gc = BlockCollector(lambda: node, keep.__contains__, clock)
    gc.retire(cids[:2])
    gc.fetched(cids[2])
    clock.now += GRACE_S - 1
    assert gc.collect() == 0 and gc.waiting() == 3
    clock.now += 1
    assert gc.collect() == 2
    assert (gc.removed, gc.kept, gc.waiting()) == (2, 1, 0)
    assert set(node._blocks) == {cids[1], cids[3]}  # kept, and never named
    # Named again before its time: due from the later mention.
    gc.fetched(cids[3])
    clock.now += GRACE_S / 2
    gc.fetched(cids[3])
    clock.now += GRACE_S / 2
    assert gc.collect() == 0
    clock.now += GRACE_S / 2
    assert gc.collect() == 1 and cids[3] not in node._blocks


def test_an_object_already_gone_or_refused_is_not_an_error() -> None:
    node, cids = _store(1)
    clock = Clock()
    gc = BlockCollector(lambda: node, lambda _cid: False, clock)
    missing = cid_for_bytes(b"never stored")
    gc.retire([cids[0], missing])
    gc.fetched("not a CID")  # (a caller's mistake: logged, not raised)
    clock.now += GRACE_S
    assert gc.collect() == 1
    assert gc.waiting() == 0 and not node._blocks
    with pytest.raises(IpfsError):
        node.remove("not a CID")
    assert node.remove(missing) is False


def test_the_list_and_each_collect_are_bounded(monkeypatch) -> None:
    monkeypatch.setattr(blockgc, "MAX_WAITING", 5)
    monkeypatch.setattr(blockgc, "MAX_PER_COLLECT", 2)
    node, cids = _store(8)
    clock = Clock()
    gc = BlockCollector(lambda: node, lambda _cid: False, clock)
    gc.retire(cids)
    assert gc.waiting() == 5 and gc.overflowed == 3  # the oldest three went unremoved
    clock.now += GRACE_S
    assert [gc.collect() for _ in range(4)] == [2, 2, 1, 0]
    assert set(node._blocks) == set(cids[:3])


def _records(n: int) -> dict[str, bytes]:
    out = {}
    for _ in range(n):
        data = os.urandom(200)
        out[cid_for_bytes(data)] = data
    return out


def test_a_new_head_retires_exactly_what_it_no_longer_names() -> None:
    records = _records(2000)  # (no page left empty: every empty page is one object)
    book = HeadBook()

    def records_of(cids: list[str]) -> list[bytes]:
        return [records[c] for c in cids]

    first = book.our_head(sorted(records), records_of)
    assert first.retired == ()
    objects = {cid_for_bytes(o) for o in first.new_objects}
    assert all(book.names(c) for c in objects) and not book.names(next(iter(records)))
    more = _records(3)
    records.update(more)
    second = book.our_head(sorted(records), records_of)
    new = {cid_for_bytes(o) for o in second.new_objects}
    # The three changed pages and bundles and both indexes, nothing else.
    assert len(second.retired) == len(new) == 2 * len({wire.page_of(c) for c in more}) + 2
    assert set(second.retired) <= objects and not set(second.retired) & new
    assert not any(book.names(c) for c in second.retired)
    # Unchanged: nothing retired.
    assert book.our_head(sorted(records), records_of).retired == ()


def test_an_empty_page_still_listed_elsewhere_is_not_retired() -> None:
    """Pages are content-addressed: every empty page is one object. One page
    filling up must not retire the empty page the other 63 still are."""
    book = HeadBook()
    one = _records(1)
    empty_page = cid_for_bytes(wire.encode_cid_list([]))
    book.our_head([], lambda cids: [])
    head = book.our_head(sorted(one), lambda cids: [one[c] for c in cids])
    assert empty_page not in head.retired and book.names(empty_page)


def test_a_head_that_failed_to_publish_is_retired_by_the_next() -> None:
    records = _records(100)
    book = HeadBook()
    first = book.our_head(sorted(records), lambda cids: [records[c] for c in cids])
    book.forget_ours()  # (its add failed; its objects stay on disk)
    records.update(_records(1))
    second = book.our_head(sorted(records), lambda cids: [records[c] for c in cids])
    assert first.head_cid in second.retired
    assert book.our_head(sorted(records), lambda cids: [records[c] for c in cids]).retired == ()


def test_a_checked_works_evidence_is_removed_later_but_never_our_own(tmp_path) -> None:
    """A checker's fetched evidence is noted for removal; the reporter's own evidence
    stays whatever it is told (two honest reports of a unit share one evidence CID)."""
    import time

    from engine import DEV, verify_range
    from network.node import Node
    from tests.test_idle_checks import _node, _spot_check

    swarm = MemorySwarm()
    nodes: list[Node] = []
    try:
        reporter = _node(tmp_path, swarm, "reporter", nodes)
        checker = _node(tmp_path, swarm, "checker", nodes)
        a = reporter.next_assignment()
        work_cid = reporter.submit_unit(a, verify_range(DEV, a.lo, a.hi, "cpu"))
        evidence = reporter.work_record(work_cid).evidence_cid
        assert _spot_check(checker, nodes)[0] == work_cid
        assert evidence in checker._block_gc._waiting  # (fetched, then read)
        checker.ipfs.add(reporter.ipfs.get(evidence, 5.0, 1 << 20))  # (as kubo keeps it)
        clock = [time.monotonic() + 2 * GRACE_S]
        for n in nodes:
            n._block_gc._clock = lambda: clock[0]
        checker._block_gc.collect()
        assert evidence not in checker.ipfs._blocks and checker._block_gc.removed == 1
        reporter._block_gc.fetched(evidence)
        clock[0] += 2 * GRACE_S
        reporter._block_gc.collect()
        assert evidence in reporter.ipfs._blocks and reporter._block_gc.kept == 1
    finally:
        for n in nodes:
            n.stop()
