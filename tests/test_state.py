"""Derived network state: quorum, frontier, leaderboard, usernames, disputes, next unit.

Built on real signed records (network.records + network.codec); derive_state gets
them as network.rejection.Accepted, exactly what validation hands the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from engine.evidence import merkle_proof, merkle_root
from engine.params import Params
from network import codec
from network.records import (
    AccountRecord,
    CheckRecord,
    DelegationRecord,
    DisputeRecord,
    WorkRecord,
)
from network.rejection import Accepted
from network.state import (
    CONFLICTING,
    DISPUTED,
    OPEN,
    REPORTED_ONCE,
    VERIFIED,
    derive_state,
    next_unit,
)

T0 = 1_750_000_000
PARAMS = Params.custom(name="state-test", unit_bits=8, block_bits=4, sieve_k=4)
OTHER_PARAMS = Params.custom(name="other", unit_bits=9, block_bits=4, sieve_k=4)


@dataclass(frozen=True)
class Person:
    account: SigningKey
    node: SigningKey

    @property
    def acct(self) -> bytes:
        return bytes(self.account.verify_key)

    @property
    def node_pub(self) -> bytes:
        return bytes(self.node.verify_key)


def _person(i: int) -> Person:
    return Person(SigningKey(bytes([i]) * 32), SigningKey(bytes([100 + i]) * 32))


ALICE, BOB, CAROL, DAVE = (_person(i) for i in (1, 2, 3, 4))


def _ok(signed) -> Accepted:
    return Accepted(record=signed, cid=codec.record_cid(signed))


def delegation(p: Person, created: int = T0, *, revoked: bool = False) -> Accepted:
    rec = DelegationRecord(account=p.acct, node=p.node_pub, created=created, revoked=revoked)
    return _ok(codec.sign(rec, p.account))


def account(p: Person, name: str, created: int = T0) -> Accepted:
    return _ok(codec.sign(AccountRecord(account=p.acct, username=name, created=created), p.account))


_LEAVES: dict[bytes, list[bytes]] = {}


def root_of(seed: int, params: Params = PARAMS) -> bytes:
    """A real Merkle root over made-up leaves, so disputes can prove a leaf against it."""
    leaves = [bytes([seed, i % 256, i // 256]) + bytes(29) for i in range(params.blocks_per_unit)]
    root = merkle_root(leaves)
    _LEAVES[root] = leaves
    return root


def work(
    p: Person, unit: int, root: int = 1, created: int = T0 + 100, params: Params = PARAMS
) -> Accepted:
    rec = WorkRecord(
        params=params,
        unit=unit,
        root=root_of(root, params),
        evidence_cid=f"bafkrei{'a' * 52}",
        tested=10,
        odd_steps=100,
        max_value=1000,
        max_n=params.start + 1,
        overflows=0,
        backend="cpu",
        compute_ms=5,
        node=p.node_pub,
        account=p.acct,
        created=created,
    )
    return _ok(codec.sign(rec, p.node))


def check(p: Person, target: Accepted, block: int, leaf: int, match: bool) -> Accepted:
    rec = CheckRecord(
        work_cid=target.cid,
        block=block,
        leaf=bytes([leaf]) * 32,
        match=match,
        node=p.node_pub,
        account=p.acct,
        created=T0 + 500,
    )
    return _ok(codec.sign(rec, p.node))


def dispute(p: Person, target: Accepted, block: int, leaf: int) -> Accepted:
    leaves = _LEAVES[target.record.record.root]
    # The worker's leaf with its audit path (a block past the unit gets no valid proof).
    claimed = leaves[block] if block < len(leaves) else leaves[0]
    proof = tuple(merkle_proof(leaves, block)) if block < len(leaves) else ()
    rec = DisputeRecord(
        work_cid=target.cid,
        block=block,
        recomputed_leaf=bytes([leaf]) * 32,
        claimed_leaf=claimed,
        proof=proof,
        node=p.node_pub,
        account=p.acct,
        created=T0 + 600,
    )
    return _ok(codec.sign(rec, p.node))


DELEGATIONS = [delegation(p) for p in (ALICE, BOB, CAROL, DAVE)]


def state_of(*recs: Accepted, confirmed=()):
    return derive_state([*DELEGATIONS, *recs], PARAMS, confirmed)


# --- quorum ----------------------------------------------------------------------


def test_two_accounts_same_root_verify_a_unit():
    s = state_of(work(ALICE, 0), work(BOB, 0))
    assert s.status_of(0) == VERIFIED
    assert s.units[0].verified_root == root_of(1)
    assert (s.frontier, s.frontier_bound) == (1, PARAMS.start + PARAMS.unit_size)
    assert s.units_verified == 1


def test_same_account_twice_is_not_verified():
    second_node = Person(ALICE.account, SigningKey(bytes([99]) * 32))
    s = state_of(
        delegation(second_node),
        work(ALICE, 0),
        work(ALICE, 0, created=T0 + 200),
        work(second_node, 0),
    )
    assert s.status_of(0) == REPORTED_ONCE
    assert s.units[0].roots[0].accounts == (ALICE.acct,)
    assert len(s.units[0].roots[0].work_cids) == 3
    assert s.frontier == 0


def test_conflicting_roots_are_not_verified_until_a_third_account_agrees():
    s = state_of(work(ALICE, 0, root=1), work(BOB, 0, root=2))
    assert s.status_of(0) == CONFLICTING
    assert s.units[0].verified_root is None
    s = state_of(work(ALICE, 0, root=1), work(BOB, 0, root=2), work(CAROL, 0, root=2))
    assert s.status_of(0) == VERIFIED
    assert s.units[0].verified_root == root_of(2)


def test_two_roots_with_quorum_conflict():
    s = state_of(*(work(p, 0, root=1 + i // 2) for i, p in enumerate((ALICE, BOB, CAROL, DAVE))))
    assert s.status_of(0) == CONFLICTING


def test_frontier_is_contiguous():
    recs = [work(p, u) for u in (0, 1, 3, 4) for p in (ALICE, BOB)] + [work(ALICE, 2)]
    s = state_of(*recs)
    assert [s.status_of(u) for u in range(6)] == [
        VERIFIED,
        VERIFIED,
        REPORTED_ONCE,
        VERIFIED,
        VERIFIED,
        OPEN,
    ]
    assert s.frontier == 2
    assert s.frontier_bound == PARAMS.start + 2 * PARAMS.unit_size
    assert s.units_verified == 4


# --- authority -------------------------------------------------------------------


def test_work_without_delegation_or_with_other_params_does_not_count():
    stranger = _person(9)
    w1, w2 = work(stranger, 0), work(BOB, 0, params=OTHER_PARAMS)
    s = state_of(work(ALICE, 0), w1, w2)
    assert s.status_of(0) == REPORTED_ONCE
    assert set(s.ignored) == {w1.cid, w2.cid}


def test_work_after_revocation_does_not_count():
    before, after = work(BOB, 0, created=T0 + 100), work(BOB, 1, created=T0 + 300)
    s = state_of(
        work(ALICE, 0), work(ALICE, 1), before, after, delegation(BOB, T0 + 300, revoked=True)
    )
    assert s.status_of(0) == VERIFIED
    assert s.status_of(1) == REPORTED_ONCE
    assert after.cid in s.ignored
    # A later delegation of the same pair does not undo the revocation.
    s = state_of(
        work(ALICE, 1), after, delegation(BOB, T0 + 300, revoked=True), delegation(BOB, T0 + 250)
    )
    assert s.status_of(1) == REPORTED_ONCE


def test_work_before_its_delegation_does_not_count():
    late = Person(ALICE.account, SigningKey(bytes([77]) * 32))
    early = work(late, 0, created=T0 + 50)
    s = derive_state([delegation(late, T0 + 100), delegation(BOB), early, work(BOB, 0)], PARAMS)
    assert s.status_of(0) == REPORTED_ONCE
    assert early.cid in s.ignored


# --- disputes --------------------------------------------------------------------


def test_confirmed_dispute_removes_every_record_with_the_bad_root():
    bad_a, bad_b = work(ALICE, 0, root=5), work(BOB, 0, root=5)
    d = dispute(CAROL, bad_a, block=3, leaf=9)
    s = state_of(bad_a, bad_b, d)
    assert s.status_of(0) == VERIFIED  # unconfirmed: a dispute alone changes nothing
    s = state_of(bad_a, bad_b, d, confirmed={d.cid})
    assert s.status_of(0) == DISPUTED
    assert s.units[0].removed == tuple(sorted([bad_a.cid, bad_b.cid]))
    assert s.units[0].disputes == (d.cid,)
    assert s.confirmed_disputes == {d.cid}
    assert s.frontier == 0
    # Fresh, correct results verify the unit again; it stays flagged as disputed.
    s = state_of(bad_a, bad_b, d, work(CAROL, 0, root=6), work(DAVE, 0, root=6), confirmed={d.cid})
    assert s.status_of(0) == VERIFIED
    assert s.units[0].disputed
    assert s.frontier == 1


def test_independent_failed_check_confirms_a_dispute():
    bad, good = work(ALICE, 0, root=5), work(BOB, 0, root=6)
    d = dispute(CAROL, bad, block=2, leaf=9)
    # The disputer's own check, or the accused account's, confirms nothing.
    for own in (check(CAROL, bad, 2, 9, False), check(ALICE, bad, 2, 9, False)):
        assert state_of(bad, good, d, own).confirmed_disputes == frozenset()
    # Another block or another leaf does not confirm either.
    assert not state_of(bad, good, d, check(DAVE, bad, 1, 9, False)).confirmed_disputes
    assert not state_of(bad, good, d, check(DAVE, bad, 2, 8, False)).confirmed_disputes
    s = state_of(bad, good, d, check(DAVE, bad, 2, 9, False))
    assert s.confirmed_disputes == {d.cid}
    assert s.status_of(0) == DISPUTED
    assert s.units[0].roots[0].root == root_of(6)


def test_dispute_of_a_block_outside_the_unit_is_ignored():
    bad = work(ALICE, 0, root=5)
    d = dispute(CAROL, bad, block=PARAMS.blocks_per_unit, leaf=9)
    s = state_of(bad, d, confirmed={d.cid})
    assert s.status_of(0) == REPORTED_ONCE
    assert d.cid in s.ignored


# --- leaderboard and directory ---------------------------------------------------


def test_leaderboard_credits_the_quorum_in_report_order():
    recs = [
        work(ALICE, 0, created=T0 + 10),
        work(BOB, 0, created=T0 + 20),
        work(CAROL, 0, created=T0 + 30),  # third agreeing report: no credit
        work(BOB, 1, created=T0 + 10),
        work(CAROL, 1, created=T0 + 20),
        work(DAVE, 2),
        check(DAVE, work(ALICE, 0, created=T0 + 10), 0, 1, True),
    ]
    s = state_of(*recs, account(ALICE, "alice"))
    board = {e.account: e for e in s.leaderboard}
    assert [e.account for e in s.leaderboard][:2] == [BOB.acct, ALICE.acct]
    assert [e.rank for e in s.leaderboard] == [1, 2, 3, 4]
    b, a, c, d = board[BOB.acct], board[ALICE.acct], board[CAROL.acct], board[DAVE.acct]
    assert (b.units_credited, b.first_reports, b.second_reports) == (2, 1, 1)
    assert (a.units_credited, a.first_reports, a.second_reports) == (1, 1, 0)
    assert (c.units_credited, c.first_reports, c.second_reports) == (1, 0, 1)
    assert b.numbers_verified == 2 * PARAMS.unit_size
    assert (d.units_credited, d.pending, d.checks) == (0, 1, 1)
    assert a.display_name == "alice"
    assert d.display_name == DAVE.acct.hex()[:8]


def test_username_owner_is_the_earliest_claim_and_losers_get_a_suffix():
    s = state_of(
        account(ALICE, "Alice", created=T0 + 5),
        account(BOB, "alice", created=T0 + 1),
        account(CAROL, "carol", created=T0),
        account(CAROL, "caroline", created=T0 + 9),  # the newest claim is current
    )
    assert s.name_owners["alice"] == BOB.acct
    assert s.accounts[BOB.acct].display_name == "alice"
    assert s.accounts[ALICE.acct].display_name == "alice#" + ALICE.acct.hex()[:4]
    assert not s.accounts[ALICE.acct].owns_name
    assert s.accounts[CAROL.acct].username == "caroline"
    assert "carol" not in s.name_owners
    assert s.accounts[CAROL.acct].nodes == (CAROL.node_pub,)


def test_directory_lists_revoked_nodes():
    s = state_of(account(BOB, "bob"), delegation(BOB, T0 + 9, revoked=True))
    assert s.accounts[BOB.acct].nodes == ()
    assert s.accounts[BOB.acct].revoked_nodes == (BOB.node_pub,)


# --- next unit -------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    unit: int
    node: bytes
    account: bytes
    expires_at: float


def test_next_unit_prefers_the_lowest_unit_needing_a_result():
    s = state_of(work(ALICE, 0), work(BOB, 0), work(BOB, 1), work(ALICE, 2))
    # Unit 1 needs a second result, and Alice never reported it.
    assert next_unit(s, [], ALICE.acct, now=0) == 1
    # Bob reported 1 already: never his own second result; 2 needs his.
    assert next_unit(s, [], BOB.acct, now=0) == 2
    # The frontier unit (1) has Bob's report: it lacks one, so a fresh claim by
    # another account closes it...
    dave = Claim(1, DAVE.node_pub, DAVE.acct, 100.0)
    assert next_unit(s, [dave], CAROL.acct, now=50) == 2
    # ...but only for the frontier grace after it was first seen: then one claim no
    # longer closes the frontier, two do.
    from network.state import FRONTIER_GRACE_S

    old = HeldClaim(1, DAVE.node_pub, DAVE.acct, 1e9, first_seen=0.0)
    assert next_unit(s, [old], CAROL.acct, now=FRONTIER_GRACE_S - 1) == 2
    assert next_unit(s, [old], CAROL.acct, now=FRONTIER_GRACE_S) == 1
    alice = HeldClaim(1, ALICE.node_pub, ALICE.acct, 1e9, first_seen=0.0)
    assert next_unit(s, [old, alice], CAROL.acct, now=FRONTIER_GRACE_S) == 2
    # A frontier unit nobody reported stays open while fewer than two other accounts
    # claim it, fresh or not.
    fresh = state_of(work(ALICE, 0), work(BOB, 0))
    assert next_unit(fresh, [dave], CAROL.acct, now=50) == 1
    alice = Claim(1, ALICE.node_pub, ALICE.acct, 100.0)
    assert next_unit(fresh, [dave, alice], CAROL.acct, now=50) == 2
    # Beyond the frontier, an unexpired claim by someone else blocks. Carol reported 1.
    s = state_of(work(ALICE, 0), work(BOB, 0), work(CAROL, 1))
    taken = [Claim(2, DAVE.node_pub, DAVE.acct, 100.0)]
    assert next_unit(s, taken, CAROL.acct, now=50) == 3
    assert next_unit(s, taken, CAROL.acct, now=100) == 2  # expired
    # Her own claim does not keep her off it (resume after a restart)...
    mine = [Claim(2, CAROL.node_pub, CAROL.acct, 100.0)]
    assert next_unit(s, mine, CAROL.acct, now=50, my_node=CAROL.node_pub) == 2
    # ...but her other node's claim does.
    assert next_unit(s, mine, CAROL.acct, now=50, my_node=b"\x00" * 32) == 3
    assert next_unit(s, taken, CAROL.acct, now=0, unit_limit=3) is None


def test_claims_count_per_account_not_per_node_key():
    # One account with many delegated node keys claims units 2..40: only its lowest
    # claim counts (no weight), so everything else stays open.
    s = state_of(work(ALICE, 0), work(BOB, 0), work(CAROL, 1))
    squat = [Claim(u, bytes([u]) * 32, DAVE.acct, 1e9) for u in range(2, 41)]
    assert next_unit(s, squat, CAROL.acct, now=0) == 3
    assert next_unit(s, squat, ALICE.acct, now=0) == 1  # the frontier is always open


def test_a_claim_stops_blocking_once_its_account_reported_the_unit():
    # Bob claimed unit 1 and reported it; his claim must not keep Carol from the
    # second result until it expires.
    # (Carol reported the frontier unit 1 herself, so unit 2 is her next.)
    s = state_of(work(ALICE, 0), work(BOB, 0), work(CAROL, 1), work(BOB, 2))
    bobs = [Claim(2, BOB.node_pub, BOB.acct, 900.0)]
    assert next_unit(s, bobs, CAROL.acct, now=10) == 2
    # A claim by someone who has not reported yet still blocks.
    daves = [Claim(2, DAVE.node_pub, DAVE.acct, 900.0)]
    assert next_unit(s, daves, CAROL.acct, now=10) == 3


@dataclass(frozen=True)
class HeldClaim(Claim):
    first_seen: float = 0.0


def test_a_claim_counts_at_most_max_hold_after_its_accounts_first_claim():
    from network.state import MAX_CLAIM_HOLD_S, claim_in_force

    s = state_of(work(ALICE, 0), work(BOB, 0), work(CAROL, 1))
    # Dave has held unit 2 since t=1000 and keeps renewing (the expiry stays ahead).
    far = 1000 + 10 * MAX_CLAIM_HOLD_S
    held = [HeldClaim(2, DAVE.node_pub, DAVE.acct, far, first_seen=1000.0)]
    assert next_unit(s, held, CAROL.acct, now=1000 + MAX_CLAIM_HOLD_S - 1) == 3
    # From MAX_CLAIM_HOLD_S on the unit is open again, although the claim is unexpired.
    assert next_unit(s, held, CAROL.acct, now=1000 + MAX_CLAIM_HOLD_S) == 2
    assert not claim_in_force(held[0], 1000 + MAX_CLAIM_HOLD_S)
    assert claim_in_force(held[0], 1000 + MAX_CLAIM_HOLD_S - 1)
    # The cap is a parameter (the simulator counts in ticks).
    assert next_unit(s, held, CAROL.acct, now=1010, max_hold=10) == 2
    # A capped claim does not use up the account's one counted claim: its next unit counts.
    moved = [*held, HeldClaim(4, DAVE.node_pub, DAVE.acct, far, first_seen=far - 5)]
    assert next_unit(s, moved, CAROL.acct, now=1000 + MAX_CLAIM_HOLD_S) == 2
    others = [Claim(2, ALICE.node_pub, ALICE.acct, far), Claim(3, BOB.node_pub, BOB.acct, far)]
    assert next_unit(s, moved + others, CAROL.acct, now=far - 1) == 5  # Dave's 4 counts
    # Claims without first_seen (the node's synthetic "committed" claims) only expire.
    assert claim_in_force(Claim(2, DAVE.node_pub, DAVE.acct, far), far - 1)


def test_the_hold_cap_opens_the_frontier_to_a_squatting_pair():
    # Without a trust policy two accounts close the frontier; the cap reopens it.
    from network.state import MAX_CLAIM_HOLD_S

    s = state_of(work(ALICE, 0), work(BOB, 0))
    pair = [HeldClaim(1, DAVE.node_pub, DAVE.acct, 1e12, first_seen=0.0),
            HeldClaim(1, BOB.node_pub, BOB.acct, 1e12, first_seen=0.0)]
    assert next_unit(s, pair, CAROL.acct, now=MAX_CLAIM_HOLD_S - 1) == 2
    assert next_unit(s, pair, CAROL.acct, now=MAX_CLAIM_HOLD_S) == 1


def test_next_unit_on_an_empty_network_is_unit_zero():
    assert next_unit(state_of(), [], ALICE.acct, now=0) == 0


# --- order and duplication do not matter -----------------------------------------

POOL = [
    *DELEGATIONS,
    delegation(DAVE, T0 + 400, revoked=True),
    account(ALICE, "alice"),
    account(BOB, "Alice", created=T0 + 3),
    account(CAROL, "carol"),
    *(work(p, u, root=1) for u in range(4) for p in (ALICE, BOB)),
    work(CAROL, 1, root=2),
    work(CAROL, 4, root=3),
    work(DAVE, 4, root=3, created=T0 + 500),  # after Dave's revocation
    work(DAVE, 5, root=3),
    work(ALICE, 5, root=4),
    work(BOB, 6, root=1, params=OTHER_PARAMS),
]
BAD = work(CAROL, 6, root=7)
POOL += [BAD, work(DAVE, 6, root=7), dispute(ALICE, BAD, 1, 8), check(BOB, BAD, 1, 8, False)]


def _contiguous(state) -> int:
    n = 0
    while state.status_of(n) == VERIFIED:
        n += 1
    return n


@settings(max_examples=60, deadline=None)
@given(
    order=st.permutations(range(len(POOL))),
    dupes=st.lists(st.integers(0, len(POOL) - 1), max_size=10),
    subset=st.lists(st.booleans(), min_size=len(POOL), max_size=len(POOL)),
)
def test_state_ignores_order_and_duplicates(order, dupes, subset):
    chosen = [i for i in range(len(POOL)) if subset[i]]
    reference = derive_state([POOL[i] for i in chosen], PARAMS)
    shuffled = [POOL[i] for i in order if subset[i]] + [POOL[i] for i in dupes if subset[i]]
    state = derive_state(shuffled, PARAMS)
    assert state == reference
    assert state.frontier == _contiguous(state)
    assert state.frontier_bound == PARAMS.start + state.frontier * PARAMS.unit_size
    assert state.record_count == len(chosen)


def test_full_pool_state():
    s = derive_state(POOL, PARAMS)
    assert [s.status_of(u) for u in range(8)] == [
        VERIFIED,
        VERIFIED,  # root 1 has quorum; Carol's root 2 alone does not block it
        VERIFIED,
        VERIFIED,
        REPORTED_ONCE,  # Dave's report came after his revocation
        CONFLICTING,
        DISPUTED,  # Carol and Dave agreed on a root a confirmed dispute refuted
        OPEN,
    ]
    assert s.frontier == 4
    assert s.units[6].roots == ()


def test_an_unproven_dispute_of_correct_work_is_never_confirmed():
    # An attacker disputes honest work without the worker's proven leaf; even a
    # failed check from a third account must not remove the work.
    honest = work(ALICE, 0)
    rec = DisputeRecord(
        work_cid=honest.cid,
        block=1,
        recomputed_leaf=bytes([9]) * 32,
        node=DAVE.node_pub,
        account=DAVE.acct,
        created=T0 + 600,
    )
    fake = _ok(codec.sign(rec, DAVE.node))
    s = state_of(honest, work(BOB, 0), fake, check(CAROL, honest, 1, 9, False))
    assert s.status_of(0) == VERIFIED and not s.confirmed_disputes
    assert fake.cid in s.ignored
