"""Which peers' heads are read, and when (network/nodeparts/headreads.py): at once
when a head counts far more records than we hold; after its grace when it still
counts more; the head unread longest as a backstop, one per interval; and, while our
outbox waits, one head counting as many records as ours per interval read only where
our waiting records would be listed. The policy's logic on a clock of its own; then
the node over the in-memory IpfsNode, with real ledgers and signatures (the
constants set per test, so nothing depends on timing)."""

from __future__ import annotations

import time

import pytest

from network import wire
from network.ipfs import cid_for_bytes
from network.ipfs.memory import MemorySwarm
from network.nodeparts import headreads
from network.nodeparts.headreads import ACK, BACKSTOP, READ, HeadReadPolicy
from network.nodeparts.heads import HeadBook
from tests.netutil import wait_until
from tests.test_head_fetches import _delegations, _joiner

# --- the policy ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _policy() -> tuple[HeadReadPolicy, Clock]:
    clock = Clock()
    return HeadReadPolicy(100, clock=clock), clock


def _due(policy: HeadReadPolicy, ours: int, *, waits: bool = False, skip=()) -> list:
    return policy.due(ours, lambda: waits, skip=lambda p: p in skip)


def test_far_ahead_is_read_at_once_a_little_ahead_after_the_grace() -> None:
    policy, clock = _policy()
    assert policy.on_head("far", 10 + headreads.HEAD_AHEAD_AT_ONCE, ours=10) == READ
    assert policy.on_head("near", 11, ours=10) is None
    assert _due(policy, 10) == []  # within the grace: gossip may bring it
    clock.t += headreads.HEAD_GRACE_S
    assert _due(policy, 10) == [("far", READ), ("near", READ)]
    # Once gossip brought what it counted, the surplus is gone: only the backstop
    # would read it (it just ran).
    policy._last_backstop = clock.t
    assert _due(policy, 11) == [("far", READ)]


def test_the_backstop_reads_the_oldest_unread_head_one_per_interval() -> None:
    policy, clock = _policy()
    for i, peer in enumerate(("a", "b", "c")):
        policy.on_head(peer, 10 - i, ours=10)  # as many as ours, or fewer
        clock.t += 0.1
    clock.t += headreads.HEAD_GRACE_S
    assert _due(policy, 10) == [("a", BACKSTOP)]
    assert _due(policy, 10) == []  # one per interval
    clock.t += headreads.BACKSTOP_INTERVAL_S
    assert _due(policy, 10) == [("a", BACKSTOP)]  # still unread: still the oldest
    policy.held("a")
    clock.t += headreads.BACKSTOP_INTERVAL_S
    assert _due(policy, 10) == [("b", BACKSTOP)]
    policy.read_in_part("b")  # (unread again from now: "c" is older)
    clock.t += headreads.BACKSTOP_INTERVAL_S
    assert _due(policy, 10) == [("c", BACKSTOP)]
    assert policy.unread() == ["b", "c"]


def test_acknowledgement_reads_take_a_head_as_full_as_ours_while_the_outbox_waits() -> None:
    policy, clock = _policy()
    policy.on_head("fewer", 9, ours=10)
    policy.on_head("same", 10, ours=10)
    clock.t += headreads.HEAD_GRACE_S
    # the backstop takes the oldest ("fewer"); the ack read a head as full as ours
    assert _due(policy, 10, waits=True) == [("fewer", BACKSTOP), ("same", ACK)]
    clock.t += headreads.ACK_READ_INTERVAL_S
    assert _due(policy, 10, waits=True) == [("same", ACK)]  # one per interval
    clock.t += headreads.ACK_READ_INTERVAL_S
    assert _due(policy, 10, waits=False) == []  # nothing waits: no ack read
    assert _due(policy, 11, waits=True) == []  # fewer than ours now: would not list ours


def test_skipped_peers_are_left_for_later() -> None:
    policy, clock = _policy()
    policy.on_head("busy", 20, ours=10)
    clock.t += headreads.HEAD_GRACE_S
    assert _due(policy, 10, skip={"busy"}) == []
    assert _due(policy, 10) == [("busy", READ)]


# --- the node ------------------------------------------------------------------------


def _serve(peer, records: list[bytes]) -> tuple[str, list[str]]:
    """`peer` serves these records and its head listing them: (head CID, record CIDs)."""
    cids = [peer.add(r) for r in records]
    head = HeadBook().our_head(sorted(cids))
    for obj in head.new_objects:
        peer.add(obj)
    return head.head_cid, cids


@pytest.fixture
def started(tmp_path):
    """The node under test, started, with one connected peer ("peer")."""
    swarm = MemorySwarm()
    node = _joiner(tmp_path, swarm)
    peer = swarm.node("peer")
    node.start()
    peer.connect(node.ipfs.addresses()[0])
    try:
        yield swarm, node, peer
    finally:
        node.stop()


def _gets(swarm: MemorySwarm, node) -> list[str]:
    me = node.ipfs.peer_id()
    return [cid for who, cid in swarm.gets if who == me]


def _holds(node, cids: list[str]) -> bool:
    node.poll(0.05)
    return all(node._store.holds(c) for c in cids)


def _run_for(node, seconds: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        node.poll(0.05)


def test_a_head_a_little_ahead_is_read_after_its_grace(started, monkeypatch) -> None:
    monkeypatch.setattr(headreads, "HEAD_GRACE_S", 3600.0)
    swarm, node, peer = started
    head_cid, cids = _serve(peer, _delegations(1))
    ours = node._store.counts()[0]
    node._sync.on_head(wire.Head(bytes(32), head_cid, ours + 1), "peer")
    _run_for(node, 1.0)
    assert head_cid not in _gets(swarm, node)
    monkeypatch.setattr(headreads, "HEAD_GRACE_S", 0.0)  # the grace is over
    wait_until(lambda: _holds(node, cids), 30, "the record the head lists")

    def held() -> bool:  # (read again once the record is in, as any head begun)
        node.poll(0.05)
        return node._heads.holds("peer", head_cid)

    wait_until(held, 30, "the head held whole")
    reads = dict(node.status().gets)  # (which rule read it, counted)
    assert reads["read_after_grace"] >= 1 and "read_at_once" not in reads


def test_the_backstop_brings_what_gossip_lost_behind_an_equal_count(started, monkeypatch) -> None:
    monkeypatch.setattr(headreads, "HEAD_GRACE_S", 0.0)
    monkeypatch.setattr(headreads, "BACKSTOP_INTERVAL_S", 3600.0)
    swarm, node, peer = started
    node._sync.reads._last_backstop = time.monotonic()  # (one just ran)
    head_cid, cids = _serve(peer, _delegations(1))
    ours = node._store.counts()[0]
    node.ledger.acknowledge(node.ledger.unacknowledged(), "someone")  # (no ack reads)
    node._sync.on_head(wire.Head(bytes(32), head_cid, ours), "peer")  # as many as ours
    _run_for(node, 1.0)
    assert head_cid not in _gets(swarm, node)
    monkeypatch.setattr(headreads, "BACKSTOP_INTERVAL_S", 0.0)  # the next backstop
    wait_until(lambda: _holds(node, cids), 30, "the record, from the backstop's read")
    assert dict(node.status().gets)["read_backstop"] >= 1


def test_an_acknowledgement_read_fetches_only_the_pages_of_our_waiting_records(
    started, monkeypatch
) -> None:
    monkeypatch.setattr(headreads, "HEAD_GRACE_S", 0.0)
    monkeypatch.setattr(headreads, "BACKSTOP_INTERVAL_S", 3600.0)
    swarm, node, peer = started
    node._sync.reads._last_backstop = time.monotonic()
    waiting = node.ledger.unacknowledged()
    assert waiting  # our account and delegation: no peer listed them yet
    # The peer holds ours and as many others: same count as ours after we hold them.
    others = _delegations(3)
    listed = [*node.ledger.get_many(node.ledger.heads_list()), *others]
    head_cid, cids = _serve(peer, listed)
    for data in others:
        node.ingest(data, "gossip")
    assert node._store.counts()[0] == len(cids)

    def acknowledged() -> bool:
        node.poll(0.05)
        return node.ledger.unacknowledged() == []

    node._sync.on_head(wire.Head(bytes(32), head_cid, len(cids)), "peer")
    wait_until(acknowledged, 30, "our outbox acknowledged")
    wanted_pages = {wire.page_of(c) for c in waiting}
    pages = wire.head_page_lists(sorted(cids))
    page_cids = [cid_for_bytes(wire.encode_cid_list(p)) for p in pages]
    fetched = set(_gets(swarm, node))
    assert head_cid in fetched
    # (a wanted page may be one of our own, acknowledged without a fetch)
    assert not {page_cids[i] for i in range(wire.HEAD_PAGES) if i not in wanted_pages} & fetched
    assert not node._heads.holds("peer", head_cid)  # (the head itself stays unread)


def test_a_head_that_is_our_own_is_held_at_once_and_acknowledges_our_outbox(started) -> None:
    swarm, node, _peer = started
    node._publisher.publish_head()
    ours = node._heads.last_head_cid
    assert ours and node.ledger.unacknowledged()
    before = len(_gets(swarm, node))
    node._sync.on_head(wire.Head(bytes(32), ours, node._store.counts()[0]), "peer")
    assert node._heads.holds("peer", ours)
    assert node.ledger.unacknowledged() == []
    assert node._sync.reads.unread() == []
    assert len(_gets(swarm, node)) == before  # nothing fetched for it


def test_a_head_naming_our_records_among_its_acknowledgements_acknowledges_them_unread(
    started,
) -> None:
    swarm, node, _peer = started
    waiting = node.ledger.unacknowledged()
    assert len(waiting) >= 2
    elsewhere = cid_for_bytes(b"a head we never read")
    before = len(_gets(swarm, node))
    # Names none of ours: nothing changes.
    others = wire.encode_acks([cid_for_bytes(b"someone else's record")])
    node._sync.on_head(wire.Head(bytes(32), elsewhere, 1, acks=others), "peer")
    assert sorted(node.ledger.unacknowledged()) == sorted(waiting)
    # Names one of ours (among others): that one, and only it, is acknowledged by the
    # sender, without a get.
    acks = wire.encode_acks([waiting[0], cid_for_bytes(b"another record")])
    node._sync.on_head(wire.Head(bytes(32), elsewhere, 1, acks=acks), "peer")
    assert sorted(node.ledger.unacknowledged()) == sorted(waiting[1:])
    assert {e.cid: e.acknowledged_by for e in node.ledger.outbox(pending_only=False)}[
        waiting[0]
    ] == "peer"
    assert len(_gets(swarm, node)) == before
    assert node._sync.gets_by_kind()["ack_by_head"] == 1


def test_our_head_acknowledges_the_records_added_since_the_last_one() -> None:
    book = HeadBook()
    first = [cid_for_bytes(b"r%d" % i) for i in range(100)]
    assert sorted(book.our_head(first).added) == sorted(first)
    more = [cid_for_bytes(b"new %d" % i) for i in range(3)]
    assert sorted(book.our_head(first + more).added) == sorted(more)
    assert book.our_head(first + more).added == ()
    book.forget_ours()  # (a publish failed: everything is offered again)
    assert len(book.our_head(first + more).added) == 103


def test_a_head_whose_read_failed_waits_out_its_backoff(tmp_path, monkeypatch) -> None:
    from engine import DEV
    from network.node import Node, NodeConfig
    from network.nodeparts.backoff import FetchBackoff
    from tests.netutil import make_profile

    monkeypatch.setattr(headreads, "HEAD_GRACE_S", 0.0)
    swarm = MemorySwarm()
    profile = make_profile(tmp_path / "myself", "myself")
    node = Node(
        NodeConfig(data_dir=tmp_path / "myself", params=DEV, listen=(), bootstrap=(),
                   fetch_timeout_s=0.2),
        profile, profile.node_key(), ipfs=swarm.node("myself"),
    )
    node._sync.backoff = FetchBackoff(base_s=3600.0)  # (the first failure waits an hour)
    peer = swarm.node("peer")
    node.start()
    peer.connect(node.ipfs.addresses()[0])
    try:
        nowhere = cid_for_bytes(b"a head nobody serves")
        node._sync.on_head(wire.Head(bytes(32), nowhere, node._store.counts()[0] + 1), "peer")

        def failed() -> bool:
            node.poll(0.05)
            return node.status().fetch.failed >= 1

        wait_until(failed, 30, "the failed read")
        _run_for(node, 1.5)  # ahead of us after its grace: due every round, but backed off
        assert _gets(swarm, node).count(nowhere) == 1
    finally:
        node.stop()


def test_our_head_says_which_cids_it_lists() -> None:
    records = [cid_for_bytes(r) for r in _delegations(40)]
    book = HeadBook()
    assert book.listed_by_ours(records) == []  # nothing published yet
    head = book.our_head(sorted(records[:30]))
    assert book.held_as_ours("peer", head.head_cid)
    assert not book.held_as_ours("peer", cid_for_bytes(b"another head"))
    assert book.listed_by_ours(reversed(records)) == list(reversed(records[:30]))
