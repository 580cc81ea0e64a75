"""The frontier hint in heads (PROTOCOL §8, "Catching up"): a node still catching up
past its sync timeout takes no new unit below the highest frontier its peers' heads
report, and the SYNC_MAX_FACTOR cap does not end that; once synced, its own state
alone decides.

Found by bench/swarm.py (issue #12): in a 24-node swarm on two cores a late node's
sync wait ended before it had fetched the ~1600 records that showed every unit
verified, and it recomputed 21 of 24 verified units.

Real SQLite ledgers and signatures, the in-memory IpfsNode, heads as the signed
gossip messages a publisher sends.
"""

from __future__ import annotations

import time

import pytest

from engine import Assignment
from network import codec, wire
from network import rejection as R
from network.contributor.work import NodeWork, Wait
from network.ipfs import cid_for_bytes
from network.ipfs.memory import MemorySwarm
from network.node import (
    HEAD_INTERVAL_MAX_FACTOR,
    HEADS_PER_INTERVAL,
    HINT_MAX_FACTOR,
    SYNC_MAX_FACTOR,
    SYNC_QUIET_S,
    Node,
    NodeConfig,
)
from network.nodeparts.heads import HeadBook
from network.nodeparts.planner import Hold
from network.nodeparts.publisher import Publisher
from network.state import open_units
from tests.netutil import make_profile
from tests.test_claims_conflict import NOW, SETTLE, Clock, Seat, real_work
from tests.test_state import ALICE, BOB, CAROL, DAVE, PARAMS, delegation, state_of, work
from tests.test_wire import signed_body

TIMEOUT_S = 20.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def seats(tmp_path, clock):
    made: list[Seat] = []
    swarm = MemorySwarm()

    def make(me, **kw) -> Seat:
        seat = Seat(tmp_path, swarm, me, clock, **kw)
        seat.ingest(*(delegation(p) for p in (ALICE, BOB, CAROL, DAVE)))
        made.append(seat)
        return seat

    yield make
    for seat in made:
        seat.close()


def _head_from(seat: Seat) -> bytes:
    """`seat`'s signed head as its publisher gossips it (its frontier included)."""
    folder = seat.planner._data_dir
    publisher = Publisher(seat.services, seat.store, HeadBook(), evidence_dir=folder)
    before = len(seat.services.ipfs.published)
    publisher.publish_head()
    (sent,) = seat.services.ipfs.published[before:]
    return sent[1]


# ---- the rule, in the state and the planner --------------------------------------------


def test_open_units_start_at_the_floor():
    st = state_of(work(ALICE, 0), work(BOB, 0))  # frontier 1
    assert open_units(st, [], CAROL.acct, NOW, count=3) == [1, 2, 3]
    assert open_units(st, [], CAROL.acct, NOW, count=3, floor=5) == [5, 6, 7]
    assert open_units(st, [], CAROL.acct, NOW, count=3, floor=0) == [1, 2, 3]
    assert open_units(st, [], CAROL.acct, NOW, unit_limit=5, floor=5) == []
    # A huge floor (a peer's lie) lists units above it, and nothing below.
    assert open_units(st, [], CAROL.acct, NOW, floor=wire.MAX_HEAD_FRONTIER) == [
        wire.MAX_HEAD_FRONTIER
    ]


def test_a_node_catching_up_takes_no_new_unit_below_the_floor(seats):
    me = seats(ALICE, alone=True, unit_limit=6)
    got = me.planner.take_unit(floor=4)
    assert isinstance(got, Assignment) and got.unit == 4
    assert me.planner.take_unit(floor=6) is None  # nothing open at or above it
    # Synced (no floor): its own state alone decides.
    again = seats(BOB, alone=True, unit_limit=6)
    got = again.planner.take_unit()
    assert isinstance(got, Assignment) and got.unit == 0


def test_our_own_checkpoint_below_the_floor_is_resumed_all_the_same(seats):
    me = seats(ALICE, alone=True)
    me.planner.checkpoint_path(2).parent.mkdir(parents=True)
    me.planner.checkpoint_path(2).write_bytes(b"")
    got = me.planner.take_unit(floor=5)
    assert isinstance(got, Assignment) and got.unit == 2


def test_a_settling_claim_the_floor_passed_is_dropped(seats, clock):
    me = seats(ALICE)
    me.planner.note_peers(["peer"])
    clock.t += 3.0  # listened
    hold = me.planner.take_unit(floor=1)
    assert isinstance(hold, Hold) and "claimed unit" in hold.reason
    claimed = int(hold.reason.split()[2].rstrip(";"))
    assert claimed >= 1
    clock.t += SETTLE
    got = me.planner.take_unit(floor=claimed + 1)  # peers report it verified meanwhile
    assert not (isinstance(got, Assignment) and got.unit <= claimed)
    assert any(kind == "claim dropped" for kind, _d in me.events)


# ---- heads carry the hint -----------------------------------------------------------


def test_the_hint_is_the_highest_frontier_of_the_peers_newest_heads(seats):
    me, peer = seats(ALICE), seats(BOB)
    assert me.sync.frontier_hint() is None  # no head yet: wait as before
    peer.ingest(real_work(CAROL, 0), real_work(DAVE, 0), real_work(CAROL, 1), real_work(DAVE, 1))
    assert peer.store.state().frontier == 2
    me.sync.on_message("peer-b", _head_from(peer))
    assert me.sync.frontier_hint() == 2
    cid = _any_cid()
    old_form = wire.sign_head(wire.Head(ALICE.node_pub, cid, 1), ALICE.node)
    me.sync.on_message("peer-a", old_form)  # frontier 0: the hint stays the highest
    assert me.sync.frontier_hint() == 2
    # A peer's newest head replaces its older one.
    lower = wire.sign_head(wire.Head(BOB.node_pub, cid, 1, frontier=1), BOB.node)
    me.sync.on_message("peer-b", lower)
    assert me.sync.frontier_hint() == 1


def test_a_malformed_frontier_is_refused_and_counted(seats):
    me = seats(ALICE)
    body = {"v": 1, "t": "head", "node": BOB.node_pub, "head": _any_cid(), "count": 1, "f": 0}
    me.sync.on_message("peer", signed_body(body, wire.HEAD_DOMAIN, BOB.node))
    assert me.sync.frontier_hint() is None
    assert me.services.ledger.rejection_counts().get(R.MALFORMED) == 1


def _any_cid() -> str:
    from network.ipfs import cid_for_bytes

    return cid_for_bytes(b"a head")


# ---- a late node --------------------------------------------------------------------


@pytest.fixture
def late(tmp_path, monkeypatch):
    """A node that started 21 s ago and is still fetching a backlog (its fetch queue
    busy, a record ingested just now): past its sync timeout, not synced."""
    profile = make_profile(tmp_path / "late", "late")
    node = Node(
        NodeConfig(data_dir=tmp_path / "late", params=PARAMS, listen=(), bootstrap=(),
                   peers=("/ip4/127.0.0.1/tcp/1/p2p/QmPeer",), sync_timeout_s=TIMEOUT_S,
                   unit_limit=4),
        profile, profile.node_key(), ipfs=MemorySwarm().node("late"),
    )
    node.start()
    monkeypatch.setattr(node._sync, "idle", lambda: False)
    node._started_at = time.monotonic() - TIMEOUT_S - 1
    node._planner._started_at = time.time() - 10 * TIMEOUT_S  # listening is over
    node._sync.last_progress = time.monotonic()
    yield node
    node.stop()


def test_a_late_node_with_a_hint_does_not_compute_a_verified_unit(seats, late):
    # The network verified units 0 and 1 (two accounts each); the late node holds
    # none of those records yet, so its own state says unit 0 is open.
    peer = seats(BOB)
    peer.ingest(real_work(CAROL, 0), real_work(DAVE, 0), real_work(CAROL, 1), real_work(DAVE, 1))
    work = NodeWork(late)
    assert late.state().frontier == 0 and not late.is_synced()
    waiting = work.next_work()  # no head yet: it waits, as before
    assert isinstance(waiting, Wait) and waiting.state == "syncing"
    late._sync.on_message("peer", _head_from(peer))
    assert late.unit_floor() == 2
    got = work.next_work()
    assert isinstance(got, Assignment) and got.unit >= 2  # real work, above the frontier
    # Past the SYNC_MAX_FACTOR cap it is "synced", but still takes nothing below the hint.
    late._started_at = time.monotonic() - SYNC_MAX_FACTOR * TIMEOUT_S - 1
    assert late.is_synced() and late.unit_floor() == 2
    picked = {got.unit}
    for _ in range(4):
        nxt = work.next_work()
        if isinstance(nxt, Assignment):
            picked.add(nxt.unit)
    assert min(picked) >= 2
    # Fetched records pausing does not end it (24 nodes on two cores: late nodes
    # whose fetches paused 5 s recomputed verified units under the old rule) ...
    late._sync.last_progress = time.monotonic() - SYNC_QUIET_S - 1
    assert late.unit_floor() == 2
    # ... holding that peer's head completely does: we then hold all it knows.
    late._heads.followed("peer", late._sync._newest_head["peer"], set(), True)
    assert late.unit_floor() is None


def test_a_late_node_with_nothing_open_above_the_hint_says_why(seats, late):
    peer = seats(BOB)
    peer.ingest(*(real_work(p, u) for u in range(4) for p in (CAROL, DAVE)))  # all 4 verified
    late._sync.on_message("peer", _head_from(peer))
    waiting = NodeWork(late).next_work()
    assert isinstance(waiting, Wait) and waiting.state == "syncing"
    assert waiting.reason == "catching up with the network (frontier ≥ 4 reported)"
    assert late.take_unit(floor=4) is None


def test_a_node_synced_with_a_lagging_peer_still_keeps_below_the_hint(seats, late, monkeypatch):
    # Holding one peer's head completely is not caught up when another peer's head
    # reports a higher frontier: the first peer may lag (bench/swarm.py at 16 nodes:
    # late nodes synced so recomputed verified units).
    peer = seats(BOB)
    peer.ingest(real_work(CAROL, 0), real_work(DAVE, 0), real_work(CAROL, 1), real_work(DAVE, 1))
    late._started_at = time.monotonic() - 5  # within the sync timeout
    late._sync.on_message("peer", _head_from(peer))
    monkeypatch.setattr(late._sync, "idle", lambda: True)
    late._heads.followed("lagging", "bafkreilagging", set(), True)  # one head held completely
    assert late.is_synced() and late.unit_floor() == 2
    got = NodeWork(late).next_work()
    assert isinstance(got, Assignment) and got.unit >= 2
    for p in (CAROL, DAVE):  # the records behind the hint arrive
        late.ingest(codec.encode(delegation(p).record), "fetch")
    for u in (0, 1):
        for p in (CAROL, DAVE):
            late.ingest(codec.encode(real_work(p, u).record), "fetch")
    assert late.state().frontier == 2
    assert late.unit_floor() is None  # our own frontier reached the hint
    # A hint above our frontier counts past the sync timeout and its cap too, while
    # we have not caught up with its peer ...
    late._started_at = time.monotonic() - SYNC_MAX_FACTOR * TIMEOUT_S - 1
    lie = wire.sign_head(wire.Head(DAVE.node_pub, _any_cid(), 1, frontier=3), DAVE.node)
    late._sync.on_message("liar", lie)
    assert late.unit_floor() == 3
    # ... up to HINT_MAX_FACTOR sync timeouts after the start (a liar's head may
    # never complete); from then on hints are ignored, whatever comes.
    late._started_at = time.monotonic() - HINT_MAX_FACTOR * TIMEOUT_S - 1
    assert late.unit_floor() is None
    late._sync.on_message("liar", wire.sign_head(
        wire.Head(DAVE.node_pub, cid_for_bytes(b"another head"), 1, frontier=9), DAVE.node))
    assert late.unit_floor() is None


def test_a_peer_whose_head_we_hold_tells_nothing_more(seats, late):
    # We hold every record of its newest head, yet our frontier is below its hint:
    # a lie (or records still pending), and what it knows we know: ignored.
    late._sync.on_message("liar", wire.sign_head(
        wire.Head(DAVE.node_pub, _any_cid(), 1, frontier=3), DAVE.node))
    assert late.unit_floor() == 3
    late._heads.followed("liar", _any_cid(), set(), True)
    assert late.unit_floor() is None


def test_a_fresh_peers_head_held_first_does_not_end_the_hints(seats, late, monkeypatch):
    # Within the sync timeout a node holds a fresh peer's head completely first (its
    # frontier 0: synced, caught up with every hint so far); a higher frontier that
    # comes after it still counts (bench/swarm.py, 32 nodes: late nodes synced so
    # against a co-hosted fresh node recomputed units verified a minute before).
    late._started_at = time.monotonic() - 5  # within the sync timeout
    monkeypatch.setattr(late._sync, "idle", lambda: True)
    fresh = wire.sign_head(wire.Head(CAROL.node_pub, _any_cid(), 2), CAROL.node)
    late._sync.on_message("fresh", fresh)
    late._heads.followed("fresh", "bafkreifresh", set(), True)
    assert late.is_synced() and late.unit_floor() is None
    peer = seats(BOB)
    peer.ingest(real_work(CAROL, 0), real_work(DAVE, 0), real_work(CAROL, 1), real_work(DAVE, 1))
    late._sync.on_message("peer", _head_from(peer))
    assert late.unit_floor() == 2
    got = NodeWork(late).next_work()
    assert isinstance(got, Assignment) and got.unit >= 2


def test_the_head_interval_grows_with_the_head_senders_heard(late):
    """With more than HEADS_PER_INTERVAL peers' heads heard, our head goes out every
    head_interval_s times senders / HEADS_PER_INTERVAL (16 senders: every 10 s)."""
    from nacl.signing import SigningKey

    for i in range(2 * HEADS_PER_INTERVAL):
        key = SigningKey.generate()
        head = wire.Head(bytes(key.verify_key), cid_for_bytes(b"head %d" % i), 1)
        late._sync.on_message(f"peer-{i}", wire.sign_head(head, key))
    assert late._sync.head_senders() == 2 * HEADS_PER_INTERVAL

    def heads_sent() -> int:
        return sum(isinstance(wire.decode_message(data), wire.Head)
                   for _topic, data in late.ipfs.published)

    late._last_head = time.monotonic() - 1.2 * late.config.head_interval_s
    before = heads_sent()
    late._periodic()
    assert heads_sent() == before  # one interval passed, not two
    late._last_head = time.monotonic() - 2.2 * late.config.head_interval_s
    late._periodic()
    assert heads_sent() == before + 1
    # A flood of heads from made-up peer ids slows ours HEAD_INTERVAL_MAX_FACTOR times
    # at most.
    late._sync._head_senders.update({f"made-up-{i}": None for i in range(5000)})
    late.ingest(codec.encode(delegation(CAROL).record), "fetch")  # our head changed
    late._last_head = time.monotonic() - (HEAD_INTERVAL_MAX_FACTOR + 0.2) * late.config.head_interval_s
    late._periodic()
    assert heads_sent() == before + 2
