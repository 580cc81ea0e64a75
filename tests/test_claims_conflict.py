"""Conflicting claims (PROTOCOL §8, "Conflicting claims" and "Choosing work"): the one
order every node computes (`claim_rank`, `claim_wins`), how many accounts a unit is open
to (`unit_capacity`), and the planner's side: listening before a new unit, the settle
after a fresh claim, spreading over the lowest open units, sending our live claim again
to new peers, and deleting checkpoints of units verified without us.

Real SQLite ledgers and signatures; the in-memory IpfsNode; claims travel between
planners as the signed gossip messages they publish; a clock the tests move.
"""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from engine import Assignment
from engine.job import verify_range
from network import codec, wire
from network.ipfs import cid_for_bytes
from network.ipfs.memory import MemorySwarm
from network.ledger import Ledger
from network.nodeparts.heads import HeadBook
from network.nodeparts.planner import (
    REPUBLISH_AGAIN_S,
    SPREAD_UNITS,
    SPREAD_UNITS_MAX,
    Hold,
    Planner,
    spread_units,
)
from network.nodeparts.publisher import Publisher
from network.nodeparts.services import Services
from network.nodeparts.store import RecordStore
from network.nodeparts.sync import Sync
from network.records import WorkRecord
from network.rejection import Accepted
from network.state import (
    FRONTIER_WORKERS,
    claim_rank,
    claim_wins,
    open_units,
    unit_capacity,
)
from tests.test_state import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    PARAMS,
    T0,
    Claim,
    HeldClaim,
    Person,
    delegation,
    state_of,
    work,
)

NOW = T0 + 1000
SETTLE = 2.0
LISTEN = 3.0
LISTEN_MAX = 20.0
EVE = Person(SigningKey(bytes([5]) * 32), SigningKey(bytes([105]) * 32))


def signed_claim(p: Person, unit: int, expires: float) -> bytes:
    """`p`'s claim on `unit` as its node gossips it."""
    return wire.sign_claim(wire.Claim(unit, p.node_pub, p.acct, int(expires)), p.node)


def real_work(p: Person, unit: int) -> Accepted:
    """A work record validation accepts: `p`'s node computed `unit` for real."""
    result = verify_range(PARAMS, *PARAMS.unit_range(unit), backend="reference")
    evidence = cid_for_bytes(b"".join(result.leaves))
    rec = WorkRecord.from_unit_result(result, PARAMS, unit, p.node_pub, p.acct, NOW - 50, evidence)
    signed = codec.sign(rec, p.node)
    return Accepted(record=signed, cid=codec.record_cid(signed))


class Clock:
    """The nodes' clock (unix seconds): NOW until a test moves `t`."""

    t = float(NOW)

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _claim(p: Person, unit: int, done: int = 0, node: bytes | None = None):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class C(Claim):
        done: int = 0

    return C(unit, node or p.node_pub, p.acct, NOW + 900.0, done)


# ---- the rules, on the state alone ------------------------------------------------------


def _winners(st, claims, unit):
    return {
        c.account
        for c in claims
        if claim_wins(st, claims, unit, c.account, c.node, NOW) and c.unit == unit
    }


def test_the_frontier_is_open_to_two_accounts_and_any_other_unit_to_one():
    fresh = state_of(work(ALICE, 0), work(BOB, 0))  # frontier 1, nobody reported it
    assert unit_capacity(fresh, 1) == FRONTIER_WORKERS == 2
    assert unit_capacity(fresh, 2) == 1  # above the frontier: one at a time
    # With its first report in, the frontier still takes two: one claim (a squatter's)
    # must never close it alone.
    half = state_of(work(ALICE, 0), work(BOB, 0), work(CAROL, 1))
    assert unit_capacity(half, 1) == FRONTIER_WORKERS
    assert unit_capacity(half, 2) == 1


def test_racing_claims_leave_exactly_the_needed_accounts_and_every_node_agrees():
    # Every claimer evaluates the same claims from its own seat: the winners they
    # find are the same set, and its size is the unit's capacity.
    fresh = state_of(work(ALICE, 0), work(BOB, 0))
    racers = [_claim(p, 2) for p in (BOB, CAROL, DAVE, EVE)]
    won = _winners(fresh, racers, 2)
    assert len(won) == 1
    best = min(racers, key=lambda c: claim_rank(2, c.node))
    assert won == {best.account}
    on_frontier = [_claim(p, 1) for p in (CAROL, DAVE, EVE)]
    assert len(_winners(fresh, on_frontier, 1)) == FRONTIER_WORKERS
    # A unit's reporter keeps no place with its (done) claim.
    half = state_of(work(ALICE, 0), work(BOB, 0), work(CAROL, 2))
    racers = [_claim(p, 2) for p in (CAROL, DAVE, EVE, ALICE)]
    won = _winners(half, racers, 2)
    assert len(won) == 1 and CAROL.acct not in won


def test_the_frontiers_second_report_goes_to_one_racer_and_no_claim_freezes_it():
    from network.state import FRONTIER_GRACE_S

    half = state_of(work(ALICE, 0), work(BOB, 0), work(CAROL, 1))  # frontier 1, one in
    racers = [_claim(p, 1) for p in (DAVE, EVE, ALICE)]
    assert len(_winners(half, racers, 1)) == 1
    # A claim first seen more than the grace ago (a squatter's, or a vanished node's)
    # keeps nobody off it: the best fresh racer still computes, whatever the ranks.
    later = NOW + FRONTIER_GRACE_S
    for squatter in (DAVE, EVE, ALICE):
        stale = HeldClaim(1, squatter.node_pub, squatter.acct, later + 900.0, first_seen=NOW)
        fresh = [
            HeldClaim(1, p.node_pub, p.acct, later + 900.0, first_seen=later)
            for p in (DAVE, EVE, ALICE)
            if p is not squatter
        ]
        claims = [stale, *fresh]
        won = {c.account for c in fresh if claim_wins(half, claims, 1, c.account, c.node, later)}
        assert len(won) == 1
        # And a node that did not claim yet still finds the frontier open.
        assert open_units(half, [stale], BOB.acct, later, count=1) == [1]
        assert open_units(half, [stale], BOB.acct, later - 1, count=1) == [2]
    # A claim first seen before the first report was made is a first-report worker's
    # (it reports itself, or it vanished): no racer for the second report.
    before = HeldClaim(1, DAVE.node_pub, DAVE.acct, NOW + 900.0, first_seen=NOW - 10)
    assert open_units(half, [before], BOB.acct, NOW, count=1, first_report_at=NOW - 5) == [1]
    assert open_units(half, [before], BOB.acct, NOW, count=1, first_report_at=NOW - 20) == [2]
    mine = HeldClaim(1, BOB.node_pub, BOB.acct, NOW + 900.0, first_seen=NOW)
    claims = [before, mine]
    assert claim_wins(half, claims, 1, BOB.acct, BOB.node_pub, NOW, first_report_at=NOW - 5)


def test_a_claim_showing_progress_outranks_fresh_ones():
    fresh = state_of(work(ALICE, 0), work(BOB, 0))
    a, b = _claim(CAROL, 2), _claim(DAVE, 2)
    loser = max((a, b), key=lambda c: claim_rank(2, c.node))
    working = _claim(CAROL if loser is a else DAVE, 2, done=3)
    other = b if loser is a else a
    assert _winners(fresh, [working, other], 2) == {working.account}


def test_one_account_computes_a_unit_once_whatever_its_node_count():
    second = SigningKey(bytes([77]) * 32)
    st = state_of(work(ALICE, 0), work(BOB, 0), delegation(Person(CAROL.account, second)))
    ours = [_claim(CAROL, 1), _claim(CAROL, 1, node=bytes(second.verify_key))]
    assert sum(claim_wins(st, ours, 1, CAROL.acct, c.node, NOW) for c in ours) == 1
    # Our other node's claim keeps this node off that unit, even the open frontier.
    held = [_claim(CAROL, 1, node=bytes(second.verify_key))]
    assert open_units(st, held, CAROL.acct, NOW, my_node=CAROL.node_pub, count=3) == [2, 3, 4]


def test_open_units_lists_the_lowest_few_and_idle_nodes_spread_over_them():
    st = state_of(work(ALICE, 0), work(BOB, 0), work(CAROL, 2))
    taken = [_claim(DAVE, 3)]
    assert open_units(st, taken, EVE.acct, NOW, count=4) == [1, 2, 4, 5]
    assert open_units(st, taken, CAROL.acct, NOW, count=3) == [1, 4, 5]  # not her own 2
    assert open_units(st, taken, EVE.acct, NOW, count=4, unit_limit=5) == [1, 2, 4]
    # Each node takes the unit where its claim ranks best: 32 node keys do not all
    # pick the same one of eight.
    units = open_units(st, [], EVE.acct, NOW, count=SPREAD_UNITS)
    picks = {min(units, key=lambda u, i=i: claim_rank(u, bytes([i]) * 32)) for i in range(32)}
    assert len(picks) >= 4


def test_the_spread_counts_the_nodes_heard_not_only_the_peers_connected():
    assert spread_units(0, 0) == 1  # alone: the lowest open unit
    assert spread_units(3, 0) == 4  # itself and its peers
    assert spread_units(40, 0) == SPREAD_UNITS  # connections alone widen it this far
    # A node given one peer in a swarm of 50 hears 49 heads: one unit per node.
    assert spread_units(1, 49) == 50
    # Made-up head senders widen it to the cap, never further.
    assert spread_units(1, 10**6) == SPREAD_UNITS_MAX


# ---- the planner ------------------------------------------------------------------------


class Seat:
    """One node's planner over a real ledger and the in-memory IPFS."""

    def __init__(self, tmp_path, swarm, me: Person, clock, *, unit_limit=None, alone=False,
                 settle_for=None):
        self.me = me
        self.events: list[tuple[str, str]] = []
        self.services = Services(
            PARAMS, me.node, me.acct, clock, lambda k, d, c: self.events.append((k, d))
        )
        folder = tmp_path / me.node_pub.hex()[:8]
        folder.mkdir()
        self.services.opened_ledger = Ledger.in_dir(folder, clock=clock)
        self.services.opened_ipfs = swarm.node(me.node_pub.hex()[:8])
        self.store = RecordStore(
            self.services,
            param_sets=(PARAMS,),
            trust=None,
            max_skew_s=600,
            on_accept=lambda s, c, src: None,
        )
        self.sync = Sync(self.services, self.store, HeadBook(), fetch_timeout_s=1.0)
        publisher = Publisher(self.services, self.store, HeadBook(), evidence_dir=folder / "ev")
        self.planner = Planner(
            self.services,
            self.store,
            publisher,
            data_dir=folder,
            trust=None,
            claim_ttl_s=900,
            unit_limit=unit_limit,
            trust_stall_s=600.0,
            on_submitted=lambda: None,
            settle_s=SETTLE,
            settle_for=settle_for,
            listen_s=LISTEN,
            listen_max_s=LISTEN_MAX,
            alone=alone,
        )
        self.planner.started()
        self._sent = 0

    def ingest(self, *records) -> None:
        for r in records:
            self.store.ingest(codec.encode(r.record), "peer")

    def send_to(self, *others: Seat) -> None:
        """Deliver the gossip we published since last time (claims) to `others`."""
        published = self.services.ipfs.published[self._sent :]
        self._sent += len(published)
        for _topic, data in published:
            for other in others:
                other.sync.on_message("peer-" + self.me.node_pub.hex()[:8], data)

    def close(self) -> None:
        self.services.ledger.close()


@pytest.fixture
def seats(tmp_path, clock):
    made: list[Seat] = []

    def make(me: Person, **kw) -> Seat:
        seat = Seat(tmp_path, swarm, me, clock, **kw)
        seat.ingest(*(delegation(p) for p in (ALICE, BOB, CAROL, DAVE, EVE)))
        made.append(seat)
        return seat

    swarm = MemorySwarm()
    yield make
    for seat in made:
        seat.close()


def _racing_for_unit_1(seats, clock, **kw) -> tuple[Seat, Seat]:
    """Alice and Bob, listened long enough to choose: Carol and Dave hold the frontier
    unit 0 (two accounts close it), so unit 1 is the only other unit under the limit."""
    alice, bob = seats(ALICE, unit_limit=2, **kw), seats(BOB, unit_limit=2, **kw)
    for seat in (alice, bob):
        for p in (CAROL, DAVE):
            seat.sync.on_message("peer", signed_claim(p, 0, clock() + 900))
        seat.planner.note_peers(["peer"])
    clock.t += LISTEN
    return alice, bob


def test_two_nodes_racing_for_one_unit_end_with_one_computing_it(seats, clock):
    # Alice and Bob both pick unit 1 at the same moment; after the settle exactly one
    # computes it.
    alice, bob = _racing_for_unit_1(seats, clock)
    first = [alice.planner.take_unit(), bob.planner.take_unit()]
    assert all(isinstance(h, Hold) and "unit 1" in h.reason for h in first)
    alice.send_to(bob)
    bob.send_to(alice)
    clock.t += SETTLE / 2
    assert all(isinstance(s.planner.take_unit(), Hold) for s in (alice, bob))  # still settling
    clock.t += SETTLE / 2
    got = {s.me.acct: s.planner.take_unit() for s in (alice, bob)}
    computing = [a for a in got.values() if isinstance(a, Assignment)]
    assert len(computing) == 1 and computing[0].unit == 1
    assert list(got.values()).count(None) == 1  # the loser finds nothing else open
    loser = alice if got[ALICE.acct] is None else bob
    assert any(kind == "claim lost" for kind, _d in loser.events)
    winner_node = (bob if loser is alice else alice).me.node_pub
    assert min((ALICE, BOB), key=lambda p: claim_rank(1, p.node_pub)).node_pub == winner_node


def test_while_gossip_is_slow_a_fresh_claim_settles_longer_and_a_late_rival_still_counts(
    seats, clock
):
    # Gossip lately took 4 settle times to arrive (DeliveryLag measured it): Alice's
    # claim waits that long, so Bob's claim, made at the same moment but delivered
    # three settle times late, still decides who computes unit 1.
    slow = 4 * SETTLE
    alice, bob = _racing_for_unit_1(seats, clock, settle_for=lambda base: max(base, slow))
    holds = [alice.planner.take_unit(), bob.planner.take_unit()]
    assert all(isinstance(h, Hold) and h.retry_s == slow for h in holds)
    clock.t += 3 * SETTLE  # past the base settle: both still wait
    assert all(isinstance(s.planner.take_unit(), Hold) for s in (alice, bob))
    alice.send_to(bob)
    bob.send_to(alice)
    clock.t += SETTLE
    got = [alice.planner.take_unit(), bob.planner.take_unit()]
    computing = [a for a in got if isinstance(a, Assignment)]
    assert len(computing) == 1 and computing[0].unit == 1 and got.count(None) == 1


def test_a_settled_claim_nobody_contests_is_computed_and_a_loser_moves_on(seats, clock):
    alice, bob = seats(ALICE), seats(BOB)
    for seat in (alice, bob):
        seat.ingest(real_work(CAROL, 0))
        seat.planner.note_peers(["peer"])
    clock.t += LISTEN
    a_hold, b_hold = alice.planner.take_unit(), bob.planner.take_unit()
    assert isinstance(a_hold, Hold) and isinstance(b_hold, Hold)
    alice.send_to(bob)
    bob.send_to(alice)
    clock.t += SETTLE
    got = [alice.planner.take_unit(), bob.planner.take_unit()]
    units = [g.unit for g in got if isinstance(g, Assignment)]
    held = [g for g in got if isinstance(g, Hold)]
    # Both compute (different units, or the frontier unit, open to two), or one lost
    # and claimed another unit, which settles in its turn.
    if len(units) == 2:
        assert units[0] != units[1] or units[0] == 0
    else:
        assert len(units) == 1 and len(held) == 1


def test_an_idle_node_that_heard_many_heads_chooses_beyond_the_lowest_eight(seats, clock):
    # Ten node keys of Alice's account, one peer each (a sparse swarm) and 40 heads
    # heard: they choose among the lowest 41 units, not the lowest 2.
    chosen = set()
    for i in range(10):
        me = Person(ALICE.account, SigningKey(bytes([200 + i]) * 32))
        seat = seats(me, unit_limit=100)
        seat.ingest(delegation(me))
        seat.planner.note_peers(["peer"], heard=40)
        clock.t += LISTEN
        hold = seat.planner.take_unit()
        assert isinstance(hold, Hold)
        chosen.add(int(hold.reason.split()[2].rstrip(";")))
    assert max(chosen) >= SPREAD_UNITS and len(chosen) >= 5


def test_a_new_node_listens_before_a_new_unit_but_not_before_its_checkpoint(seats, clock):
    me = seats(ALICE)
    hold = me.planner.take_unit()
    assert isinstance(hold, Hold) and "listening" in hold.reason
    me.planner.note_peers(["peer"])
    clock.t += LISTEN - 0.5
    assert "listening" in me.planner.take_unit().reason
    clock.t += 0.5
    assert "claimed unit 0" in me.planner.take_unit().reason
    # A restarted node resumes its own checkpoint at once.
    again = seats(BOB)
    (again.planner.checkpoint_path(4)).parent.mkdir(parents=True)
    again.planner.checkpoint_path(4).write_bytes(b"")
    resumed = again.planner.take_unit()
    assert isinstance(resumed, Assignment) and resumed.unit == 4


def test_listening_is_bounded_and_a_lone_node_does_not_listen(seats, clock):
    lonely = seats(ALICE)  # peers configured, none ever answer
    clock.t += LISTEN_MAX - 1
    assert isinstance(lonely.planner.take_unit(), Hold)
    clock.t += 1
    got = lonely.planner.take_unit()  # no peers: nobody to settle with either
    assert isinstance(got, Assignment) and got.unit == 0
    alone = seats(BOB, alone=True)
    assert isinstance(alone.planner.take_unit(), Assignment)


def test_a_new_peer_gets_our_live_claim_again(seats, clock):
    me, late = seats(ALICE), seats(BOB)
    me.planner.claim(3)
    me.send_to()  # the first claim went out before `late` was there
    me.planner.note_peers(["p1"])
    me.send_to(late)
    (c,) = [c for c in late.services.ledger.active_claims(clock()) if c.node == ALICE.node_pub]
    ours = [c for c in me.services.ledger.active_claims(clock()) if c.node == ALICE.node_pub]
    assert (c.unit, c.expires_at) == (3, ours[0].expires_at)
    # Sent once more a little later (the peer may not have subscribed yet), then not
    # again while the peers stay the same.
    clock.t += REPUBLISH_AGAIN_S
    me.planner.note_peers(["p1"])
    assert len(me.services.ipfs.published) == me._sent + 1
    me.send_to()
    clock.t += 60
    me.planner.note_peers(["p1"])
    assert len(me.services.ipfs.published) == me._sent
    # Nothing to send without a claim in force.
    quiet = seats(CAROL)
    quiet.planner.note_peers(["p1"])
    assert quiet.services.ipfs.published == []
    decoded = wire.decode_message(me.services.ipfs.published[-1][1])
    assert isinstance(decoded, wire.Claim) and decoded.unit == 3


def test_a_checkpoint_of_a_unit_verified_without_us_is_deleted(seats, clock):
    me = seats(ALICE, alone=True)
    me.ingest(real_work(BOB, 0), real_work(CAROL, 0), real_work(BOB, 1))
    folder = me.planner.checkpoint_path(0).parent
    folder.mkdir(parents=True)
    for unit in (0, 1):
        me.planner.checkpoint_path(unit).write_bytes(b"")
    got = me.planner.take_unit()
    # Unit 1 may still need us (one report in): resumed. Unit 0 is verified: deleted.
    assert isinstance(got, Assignment) and got.unit == 1
    assert not me.planner.checkpoint_path(0).exists()
    assert me.planner.checkpoint_path(1).exists()
    assert ("checkpoint removed", "unit 0 is verified") in me.events
