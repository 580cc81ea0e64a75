"""A peer's older head still queued is skipped once a newer one is announced
(network/nodeparts/sync.py `_newest_head`), over the in-memory IpfsNode.

Found by bench/swarm.py: at 16 nodes each peer's head every 5 s queued ~600 stale
head fetches per node, so our outbox's acknowledgements (read from peers' heads)
lagged and the outbox was re-announced again and again.
"""

from __future__ import annotations

from engine import DEV
from network import wire
from network.ipfs import cid_for_bytes
from network.ipfs.memory import MemorySwarm
from network.node import Node, NodeConfig
from network.nodeparts import headreads
from tests.netutil import make_profile, wait_until


def _joiner(tmp_path, swarm: MemorySwarm) -> Node:
    """The node under test ("myself", not started), on the in-memory swarm."""
    profile = make_profile(tmp_path / "myself", "myself")
    return Node(
        NodeConfig(
            data_dir=tmp_path / "myself", params=DEV, listen=(), bootstrap=(), fetch_timeout_s=30.0
        ),
        profile,
        profile.node_key(),
        ipfs=swarm.node("myself"),
    )


def test_a_stale_queued_head_is_not_fetched(tmp_path) -> None:
    swarm = MemorySwarm()
    node = _joiner(tmp_path, swarm)
    peer = swarm.node("peer")
    stale = peer.add(b"an older head")
    newest = peer.add(b"the newest head")
    key = bytes(32)
    # both announced before any fetcher runs, by a peer far ahead of us (so each is
    # read at once, sync.HEAD_AHEAD_AT_ONCE): both queued, in order
    node._sync.on_head(wire.Head(key, stale, 100), "peer")
    node._sync.on_head(wire.Head(key, newest, 101), "peer")
    assert node._sync.fetches.counters().backlog == 2
    node.start()
    peer.connect(node.ipfs.addresses()[0])
    me = node.ipfs.peer_id()
    try:
        wait_until(lambda: (me, newest) in swarm.gets, 30, "the newest head's fetch")
        wait_until(lambda: node.status().fetch.backlog == 0, 30, "the queue to drain")
        assert (me, stale) not in swarm.gets
    finally:
        node.stop()


def test_a_head_listing_more_than_the_queue_holds_is_read_again_until_all_is_fetched(
    tmp_path, monkeypatch
) -> None:
    """A backlog larger than a peer's fetch queue: what did not fit is asked for once the
    queue drains, not at the peer's next head announcement (bench/backlog.py: a 10^4
    record backlog stalled ~30 s waiting for one). The jobs are queued under the peer
    whose head listed them, and nothing is fetched twice."""
    import time

    from nacl.signing import SigningKey

    import network.nodeparts.sync as sync_module
    from network import codec
    from network.identity import delegate
    from network.nodeparts.heads import HeadBook

    monkeypatch.setattr(sync_module, "MAX_FETCH_QUEUE", 3)
    # (no network loop runs the heads' grace here: a head ahead of ours is read at once)
    monkeypatch.setattr(headreads, "HEAD_AHEAD_AT_ONCE", 1)
    monkeypatch.setattr(sync_module, "PER_PEER_INFLIGHT", 1)
    monkeypatch.setattr(sync_module, "REFOLLOW_INTERVAL_S", 0.0)
    swarm = MemorySwarm()
    node = _joiner(tmp_path, swarm)
    peer = swarm.node("peer")
    created = int(time.time()) - 60
    records = [
        codec.encode(
            delegate(SigningKey.generate(), bytes(SigningKey.generate().verify_key), created)
        )
        for _ in range(10)
    ]
    cids = [peer.add(r) for r in records]
    head = HeadBook().our_head(sorted(cids))
    for obj in head.new_objects:
        peer.add(obj)
    node._sync.on_head(wire.Head(bytes(32), head.head_cid, len(cids)), "peer")  # announced once
    for cid in cids:  # the first record fetch waits, so the head overfills the queue
        swarm.hold(cid)
    node.start()
    peer.connect(node.ipfs.addresses()[0])
    me = node.ipfs.peer_id()
    try:
        wait_until(lambda: node.status().fetch.dropped > 0, 30, "the queue to overflow")
        for cid in cids:
            swarm.release(cid)

        def holds_all() -> bool:
            node.poll(0.1)  # the network loop ingests what the fetchers got
            return all(node._store.holds(c) for c in cids)

        wait_until(holds_all, 60, "every listed record")
        fetched = [cid for who, cid in swarm.gets if who == me and cid in cids]
        assert sorted(fetched) == sorted(cids)  # each once
        head_reads = [cid for who, cid in swarm.gets if who == me and cid == head.head_cid]
        # read again by us, not re-announced by the peer (from the node's cache of
        # head objects: fetched once)
        assert len(head_reads) == 1
        assert dict(node.status().gets)["head_cached"] >= 1
    finally:
        node.stop()


def _start_among(node: Node, peers: list, objects: list[bytes]) -> str:
    """Each of `peers` holds `objects`; start `node`, connect them; its peer id."""
    for p in peers:
        for obj in objects:
            p.add(obj)
    node.start()
    for p in peers:
        p.connect(node.ipfs.addresses()[0])
    return node.ipfs.peer_id()


def _delegations(n: int) -> list[bytes]:
    import time

    from nacl.signing import SigningKey

    from network import codec
    from network.identity import delegate

    created = int(time.time()) - 60
    return [
        codec.encode(
            delegate(SigningKey.generate(), bytes(SigningKey.generate().verify_key), created)
        )
        for _ in range(n)
    ]


def test_a_head_with_bundles_is_caught_up_a_page_at_a_time(tmp_path) -> None:
    """A peer's head names its bundles: each page's records arrive in one get, not
    one get per record (PROTOCOL §8, "Bundles"); what a bundle lacks is fetched
    one by one, and a bundle's stray records are ignored. A page that lacks only a
    few records (a node keeping up) is read record by record."""
    from network.nodeparts.heads import HeadBook
    from network.nodeparts.sync import BUNDLE_MIN_MISSING

    swarm = MemorySwarm()
    node = _joiner(tmp_path, swarm)
    peer = swarm.node("peer")
    records = _delegations(64 * 2 * BUNDLE_MIN_MISSING)
    by_cid = {peer.add(r): r for r in records}
    left_out = sorted(by_cid)[:5]  # not in any bundle: fetched one by one
    stray = _delegations(1)[0]  # in a bundle, listed by no page: never taken

    def records_of(cids: list[str]) -> list[bytes]:
        return [by_cid[c] for c in cids if c not in left_out] + [stray]

    book = HeadBook()
    head = book.our_head(sorted(by_cid), records_of)
    assert head.bundles_cid
    for obj in head.new_objects:
        peer.add(obj)
    node._sync.on_head(
        wire.Head(bytes(32), head.head_cid, len(by_cid), bundles=head.bundles_cid), "peer"
    )
    node.start()
    peer.connect(node.ipfs.addresses()[0])
    me = node.ipfs.peer_id()
    try:

        def holds_all() -> bool:
            node.poll(0.1)
            return all(node._store.holds(c) for c in by_cid)

        wait_until(holds_all, 60, "every listed record")
        record_gets = [cid for who, cid in swarm.gets if who == me and cid in by_cid]
        # The rest came in bundles, but for a page listing fewer than
        # BUNDLE_MIN_MISSING (with 8 a page on average, now and then one).
        per_page: dict[int, list[str]] = {}
        for cid in by_cid:
            per_page.setdefault(wire.page_of(cid), []).append(cid)
        sparse = {c for cids in per_page.values() if len(cids) < BUNDLE_MIN_MISSING for c in cids}
        assert sorted(record_gets) == sorted(set(left_out) | sparse)
        assert node._sync.bundled == len(by_cid) - len(set(left_out) | sparse)
        assert not node._store.holds(cid_for_bytes(stray))
        # Besides those five: the head read at most twice (its index, pages, bundle
        # index and bundles), where one get per record would be 512 more.
        others = [cid for who, cid in swarm.gets if who == me and cid not in by_cid]
        assert len(others) <= 2 * (2 + 2 * wire.HEAD_PAGES)
        # One more record: its page lacks one, so it comes alone, not in the bundle.
        extra = _delegations(1)[0]
        by_cid[peer.add(extra)] = extra
        later = book.our_head(sorted(by_cid), records_of)
        for obj in later.new_objects:
            peer.add(obj)
        changed_bundles = {
            cid_for_bytes(o) for o in later.new_objects if isinstance(wire.decode_bundle(o), list)
        }
        assert len(changed_bundles) == 1  # (the new record's page's)
        node._sync.on_head(
            wire.Head(bytes(32), later.head_cid, len(by_cid), bundles=later.bundles_cid), "peer"
        )
        wait_until(holds_all, 60, "the new record")
        late_gets = {cid for who, cid in swarm.gets if who == me}
        assert cid_for_bytes(extra) in late_gets
        assert not changed_bundles & late_gets
    finally:
        node.stop()


def test_a_bundle_is_not_fetched_again_while_its_records_wait_to_be_judged(tmp_path) -> None:
    """Two peers list the same head and bundles. The records of the first peer's
    bundles wait in the inbox (the network loop has not run), so the second peer's
    head, read meanwhile, fetches no bundle again: each is fetched once."""
    from network.nodeparts.heads import HeadBook
    from network.nodeparts.sync import BUNDLE_MIN_MISSING

    swarm = MemorySwarm()
    node = _joiner(tmp_path, swarm)
    peers = [swarm.node("a"), swarm.node("b")]
    records = _delegations(64 * 2 * BUNDLE_MIN_MISSING)
    by_cid = {cid_for_bytes(r): r for r in records}
    head = HeadBook().our_head(sorted(by_cid), lambda cids: [by_cid[c] for c in cids])
    bundles = {cid_for_bytes(o) for o in head.new_objects if isinstance(wire.decode_bundle(o), list)}
    assert len(bundles) > 1
    me = _start_among(node, peers, [*records, *head.new_objects])
    announced = wire.Head(bytes(32), head.head_cid, len(by_cid), bundles=head.bundles_cid)
    def read(done_before: int) -> bool:  # a head read, nothing queued or in flight
        fetch = node.status().fetch
        return fetch.done > done_before and fetch.backlog == 0 and fetch.inflight == 0

    try:
        for name in ("a", "b"):
            before = node.status().fetch.done
            node._sync.on_head(announced, name)
            wait_until(lambda b=before: read(b), 60, f"{name}'s head read")
        assert node._sync.inbox.qsize() == len(by_cid)  # (all still waiting)
        bundle_gets = [cid for who, cid in swarm.gets if who == me and cid in bundles]
        # each at most once (a page listing fewer than BUNDLE_MIN_MISSING has none read)
        assert len(bundle_gets) == len(set(bundle_gets)) > len(bundles) / 2

        def holds_all() -> bool:
            node.poll(0.1)
            return all(node._store.holds(c) for c in by_cid)

        wait_until(holds_all, 60, "every record")
    finally:
        node.stop()


def test_bundles_change_only_with_their_pages() -> None:
    from network.nodeparts.heads import HeadBook

    records = _delegations(40)
    by_cid = {cid_for_bytes(r): r for r in records}
    book = HeadBook()
    first = book.our_head(sorted(by_cid), lambda cids: [by_cid[c] for c in cids])
    # every page, every bundle, and the two indexes
    assert len(first.new_objects) == 2 * wire.HEAD_PAGES + 2
    again = book.our_head(sorted(by_cid), lambda cids: [by_cid[c] for c in cids])
    assert again.new_objects == () and again.bundles_cid == first.bundles_cid
    extra = _delegations(1)[0]
    by_cid[cid_for_bytes(extra)] = extra
    more = book.our_head(sorted(by_cid), lambda cids: [by_cid[c] for c in cids])
    # one page, its bundle, and both indexes
    assert len(more.new_objects) == 4 and more.bundles_cid != first.bundles_cid
    bundle = [o for o in more.new_objects if extra in (wire.decode_bundle(o) or [])]
    assert len(bundle) == 1


def test_a_busy_backend_puts_no_peer_on_hold(tmp_path, monkeypatch) -> None:
    """Gets refused because the backend's fetch slots are full (IpfsBusy) fail without
    counting as the listing peer's timeouts, so no peer is put on hold for them."""
    from network.ipfs import IpfsBusy
    from network.nodeparts.heads import HeadBook

    # (no network loop runs the heads' grace here: a head ahead of ours is read at once)
    monkeypatch.setattr(headreads, "HEAD_AHEAD_AT_ONCE", 1)

    swarm = MemorySwarm()
    node = _joiner(tmp_path, swarm)
    peer = swarm.node("peer")
    cids = [peer.add(r) for r in _delegations(12)]
    head = HeadBook().our_head(sorted(cids))
    for obj in head.new_objects:
        peer.add(obj)
    real_get = node.ipfs.get

    def busy_for_records(cid, timeout, max_bytes):
        if cid in cids:
            raise IpfsBusy("32 fetches are still pending")
        return real_get(cid, timeout, max_bytes)

    node.ipfs.get = busy_for_records
    node._sync.on_head(wire.Head(bytes(32), head.head_cid, len(cids)), "peer")
    node.start()
    peer.connect(node.ipfs.addresses()[0])
    try:
        wait_until(lambda: node.status().fetch.failed >= len(cids), 30, "the busy gets")
        fetch = node.status().fetch
        assert fetch.timeouts == 0 and fetch.peers_on_hold == 0
    finally:
        node.stop()


def test_a_page_held_already_is_not_fetched_again_from_another_peer(tmp_path, monkeypatch) -> None:
    """A page is content-addressed: one we held every record of when one peer listed
    it, or one of our own, is held whoever lists it next. A peer's page that is one of
    ours acknowledges the records of ours it lists, as reading it would."""
    import network.nodeparts.sync as sync_module
    from network.nodeparts.heads import HeadBook

    monkeypatch.setattr(sync_module, "REFOLLOW_INTERVAL_S", 0.0)  # (no re-announcing peer)
    # (the peers list fewer records than we hold, our own two not among them: read
    # each head at once all the same, as what this test is about is the pages)
    monkeypatch.setattr(headreads, "HEAD_AHEAD_AT_ONCE", float("-inf"))

    swarm = MemorySwarm()
    node = _joiner(tmp_path, swarm)
    peer, other, third = swarm.node("peer"), swarm.node("other"), swarm.node("third")
    records = _delegations(40)
    cids = [peer.add(r) for r in records]
    head = HeadBook().our_head(sorted(cids))
    for obj in head.new_objects:
        peer.add(obj)
    node._sync.on_head(wire.Head(bytes(32), head.head_cid, len(cids)), "peer")
    node.start()
    for p in (peer, other, third):
        p.connect(node.ipfs.addresses()[0])
    me = node.ipfs.peer_id()

    def gets() -> list[str]:
        return [cid for who, cid in swarm.gets if who == me]

    def holds(wanted: list[str]) -> bool:
        node.poll(0.1)
        return all(node._store.holds(c) for c in wanted)

    def head_held(who: str, head_cid: str) -> bool:
        node.poll(0.1)  # (a head read again once its records are in)
        return node._heads.holds(who, head_cid)

    try:
        wait_until(lambda: holds(cids), 60, "the first peer's records")
        wait_until(lambda: head_held("peer", head.head_cid), 30, "its head held")
        # "other" holds the same records and one more: one page differs
        extra = _delegations(1)[0]
        for r in records:
            other.add(r)
        more = [*cids, other.add(extra)]
        other_head = HeadBook().our_head(sorted(more))
        for obj in other_head.new_objects:
            other.add(obj)
        before = len(gets())
        node._sync.on_head(wire.Head(bytes(32), other_head.head_cid, len(more)), "other")
        wait_until(lambda: holds(more), 60, "the one more record")
        wait_until(lambda: head_held("other", other_head.head_cid), 30, "that head")
        # its index (read again until held), the one changed page, the record: no page
        # read a second time (the status counts the pages held already)
        other_pages = {
            cid_for_bytes(wire.encode_cid_list(p)) for p in wire.head_page_lists(sorted(more))
        }
        assert dict(node.status().gets)["page_held"] == len(other_pages) - 1
        assert set(gets()[before:]) == {
            other_head.head_cid,
            wire_page_cid(more, more[-1]),
            more[-1],
        }
        # "third" lists exactly what we do: every page is one of ours
        node._publisher.publish_head()
        ours = node.ledger.heads_list()
        assert node.ledger.outbox()  # our account and delegation: not acknowledged yet
        for data in node.ledger.get_many(ours):
            third.add(data)
        third_head = HeadBook().our_head(sorted(ours))
        for obj in third_head.new_objects:
            third.add(obj)
        before = len(gets())
        node._sync.on_head(wire.Head(bytes(32), third_head.head_cid, len(ours)), "third")
        wait_until(lambda: head_held("third", third_head.head_cid), 30, "the third head")
        # (its head is the one we published: held at once, not even its index read)
        assert gets()[before:] == []
        assert node.ledger.outbox() == []  # each of ours acknowledged by "third"
    finally:
        node.stop()


def test_an_index_or_page_is_fetched_once_however_many_heads_list_it(tmp_path, monkeypatch) -> None:
    """Two peers list the same head; three of its records nobody serves, so their
    pages are never held whole and both heads are read again and again: each index
    and page is still fetched once (a CID names its content), the rest read from the
    node's cache of head objects."""
    import network.nodeparts.sync as sync_module
    from network.nodeparts.heads import HeadBook

    monkeypatch.setattr(sync_module, "REFOLLOW_INTERVAL_S", 0.0)
    swarm = MemorySwarm()
    profile = make_profile(tmp_path / "myself", "myself")
    node = Node(
        NodeConfig(
            data_dir=tmp_path / "myself", params=DEV, listen=(), bootstrap=(), fetch_timeout_s=0.3
        ),
        profile,
        profile.node_key(),
        ipfs=swarm.node("myself"),
    )
    peers = [swarm.node("a"), swarm.node("b")]
    records = _delegations(20)
    unserved = [cid_for_bytes(b"nobody has this %d" % i) for i in range(3)]
    listed = sorted([cid_for_bytes(r) for r in records] + unserved)
    head = HeadBook().our_head(listed)
    me = _start_among(node, peers, [*records, *head.new_objects])
    try:
        for name in ("a", "b"):
            node._sync.on_head(wire.Head(bytes(32), head.head_cid, len(listed)), name)

        def read_again() -> bool:
            node.poll(0.1)
            return dict(node.status().gets).get("head_cached", 0) >= 4

        wait_until(read_again, 60, "both heads read, and read again")
        assert all(node._store.holds(cid_for_bytes(r)) for r in records)
        fetched = [cid for who, cid in swarm.gets if who == me and cid not in unserved]
        head_objects = {head.head_cid} | {
            cid_for_bytes(wire.encode_cid_list(p)) for p in wire.head_page_lists(listed)
        }
        assert sorted(c for c in fetched if c in head_objects) == sorted(head_objects)
        gets = dict(node.status().gets)
        assert gets["head"] == 1 and gets["head_cached"] >= 4
        assert gets["page_cached"] >= 3  # the pages never held whole, read again
    finally:
        node.stop()


def wire_page_cid(cids: list[str], member: str) -> str:
    """The CID of the head page that lists `member`, in a head over `cids`."""
    page = wire.head_page_lists(sorted(cids))[wire.page_of(member)]
    return cid_for_bytes(wire.encode_cid_list(page))
