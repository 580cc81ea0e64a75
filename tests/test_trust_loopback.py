"""The trust protocol over real nodes on loopback: four Node objects, each with its own
embedded kubo, gossiping signed records over 127.0.0.1; every node derives its state
with the same TrustPolicy (PROTOCOL §11).

Two colluding accounts (one of them weighted: a genesis key gone bad) first verify a
true unit honestly, then try to verify a fabricated root together. The fabricated
pair never becomes verified (no drawn third account vouches for it), an honest drawn
auditor's dispute is confirmed by another account's check, and the proven fraud
slashes both colluders and re-opens the unit they had verified, on every node, with
no record deleted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.evidence import merkle_proof, merkle_root
from engine.job import verify_range
from engine.params import Params
from engine.reference import run_block
from engine.sieve import load
from network import codec
from network import trust as T
from network.records import (
    BeaconRecord,
    CheckRecord,
    CommitRecord,
    DisputeRecord,
    WorkRecord,
)
from network.state import VERIFIED
from tests.netutil import InProcessNode, make_profile, wait_until

pytestmark = pytest.mark.network

PARAMS = Params.custom(name="trust-loop", unit_bits=10, block_bits=4, sieve_k=4)
BLOCKS = PARAMS.blocks_per_unit
# The records' time base, taken when each test starts (the fixture below): records
# are dated T0 + 10 s and later, after the test's profiles delegated their nodes. A
# T0 taken at import was minutes old by the time a long suite reached these tests,
# so the records predated their delegations and were refused.
T0 = int(time.time())
EVIDENCE = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


class Peer(InProcessNode):
    """A Node with its own profile and kubo repo, polled on a thread, running `policy`."""

    def __init__(self, base: Path, name: str, peers: list[str], policy: T.TrustPolicy, **config):
        super().__init__(base, name, peers, profile=PROFILES[name], params=PARAMS, trust=policy,
                         **config)  # fmt: skip
        self.key = self.profile.node_key()
        self.acct = self.profile.account_public_key()
        self.node_pub = bytes(self.key.verify_key)

    @property
    def address(self) -> str:
        return self.node.status().listen[0]

    def publish(self, record) -> str:
        """Publish once this node holds what the record refers to (gossip is async)."""
        signed = codec.sign(record, self.key)
        verdicts = []

        def accepted():
            verdicts.append(self.node.publish(signed))
            return verdicts[-1] if isinstance(verdicts[-1], str) else None

        wait_until(accepted, 60, f"{record.KIND} to be accepted ({verdicts[-1:]})")
        return verdicts[-1]


PROFILES: dict = {}


@pytest.fixture(autouse=True)
def _records_dated_from_now() -> None:
    global T0
    T0 = int(time.time())


class Unit:
    """One unit's leaves (true or fabricated) and the records about it."""

    def __init__(self, unit: int, *, fake: bool) -> None:
        self.unit = unit
        self.result = verify_range(PARAMS, *PARAMS.unit_range(unit), backend="reference")
        self.true_leaves = list(self.result.leaves)
        self.leaves = [os.urandom(32) for _ in self.true_leaves] if fake else self.true_leaves
        self.root = merkle_root(self.leaves)
        self.nonces: dict[bytes, bytes] = {}
        self.commits: dict[bytes, str] = {}

    def commit(self, p: Peer) -> str:
        self.nonces[p.acct] = os.urandom(32)
        rec = CommitRecord(
            unit=self.unit,
            commitment=T.commitment(self.unit, self.root, p.node_pub, self.nonces[p.acct]),
            node=p.node_pub,
            account=p.acct,
            created=T0 + 10,
        )
        self.commits[p.acct] = p.publish(rec)
        return self.commits[p.acct]

    def reveal(self, p: Peer, partner: Peer) -> str:
        r = self.result
        rec = WorkRecord(
            params=PARAMS,
            unit=self.unit,
            root=self.root,
            tested=r.tested,
            odd_steps=r.odd_steps,
            max_value=r.max_value,
            max_n=r.max_n,
            overflows=r.overflows,
            backend="cpu",
            compute_ms=1,
            node=p.node_pub,
            account=p.acct,
            created=T0 + 30,
            evidence_cid=EVIDENCE,
            nonce=self.nonces[p.acct],
            seen_commits=(self.commits[partner.acct],),
        )
        return p.publish(rec)


def _beacon(olive: Peer, round_: int, listed: list[str]) -> bytes:
    value = os.urandom(32)
    olive.publish(
        BeaconRecord(
            round=round_,
            value=value,
            listed=tuple(sorted(listed)),
            node=olive.node_pub,
            account=olive.acct,
            created=T0 + 20,
        )
    )
    return value


def _everywhere(peers: list[Peer], what: str, predicate) -> None:
    wait_until(lambda: all(predicate(p.node.state()) for p in peers), 90, what)


def test_colluders_cannot_verify_a_fabricated_root_and_a_proven_fraud_reopens_their_units(
    tmp_path,
):
    names = ("olive", "hank", "cole", "dora")
    for n in names:
        PROFILES[n] = make_profile(tmp_path / n, n)
    acct = {n: PROFILES[n].account_public_key() for n in names}
    # Root of trust: olive (also the beacon), hank and cole. cole has gone bad and
    # colludes with dora, a fresh account.
    policy = T.TrustPolicy(
        genesis=frozenset({acct["olive"], acct["hank"], acct["cole"]}),
        beacons=frozenset({acct["olive"]}),
    )
    olive = Peer(tmp_path, "olive", [], policy).start()
    others = [Peer(tmp_path, n, [olive.address], policy).start() for n in names[1:]]
    hank, cole, dora = others
    peers = [olive, *others]
    try:
        _everywhere(peers, "delegations everywhere", lambda st: len(st.accounts) == 4)
        weights = {a: policy.genesis_weight for a in policy.genesis}

        # Unit 0, honestly: dora reports, cole is drawn among the checkers, hank audits.
        u0 = Unit(0, fake=False)
        u0.commit(dora)
        seed0 = T.draw_seed(_beacon(olive, 1, [u0.commits[dora.acct]]), 0)
        assert cole.acct in T.ranking(seed0, b"check", weights, (dora.acct,))[: policy.check_rank]
        u0.commit(cole)
        _beacon(olive, 2, [u0.commits[cole.acct]])
        w0 = u0.reveal(dora, cole)
        u0.reveal(cole, dora)
        auditors = T.ranking(seed0, b"audit", weights, (dora.acct, cole.acct))
        auditor = next(p for p in peers if p.acct == auditors[0])
        block = T.audit_block(seed0, auditor.acct, BLOCKS)
        auditor.publish(
            CheckRecord(
                work_cid=w0,
                block=block,
                leaf=u0.leaves[block],
                match=True,
                node=auditor.node_pub,
                account=auditor.acct,
                created=T0 + 40,
            )
        )
        _everywhere(peers, "unit 0 verified", lambda st: st.status_of(0) == VERIFIED)

        # Unit 1: the same two agree on a fabricated root, committed and revealed by
        # the rules. Their pair forms, but nobody they control can audit it.
        u1 = Unit(1, fake=True)
        u1.commit(dora)
        seed1 = T.draw_seed(_beacon(olive, 3, [u1.commits[dora.acct]]), 1)
        u1.commit(cole)
        _beacon(olive, 4, [u1.commits[cole.acct]])
        w1 = u1.reveal(dora, cole)
        u1.reveal(cole, dora)
        _everywhere(
            peers,
            "the fake pair seen",
            lambda st: st.units.get(1) is not None and st.units[1].phase == T.PAIRED,
        )
        for p in peers:
            assert p.node.state().status_of(1) != VERIFIED

        # The drawn honest auditor recomputes its block and disputes with a Merkle proof;
        # another account's check confirms it (one block recomputed, a proof).
        weights1 = olive.node.state().trust.unit_weights[1]
        drawn = T.ranking(seed1, b"audit", weights1, (dora.acct, cole.acct))
        auditor = next(p for p in peers if p.acct == drawn[0])
        confirmer = next(p for p in (olive, hank) if p is not auditor)
        block = T.audit_block(seed1, auditor.acct, BLOCKS)
        true_leaf = u1.true_leaves[block]
        d = auditor.publish(
            DisputeRecord(
                work_cid=w1,
                block=block,
                recomputed_leaf=true_leaf,
                claimed_leaf=u1.leaves[block],
                proof=tuple(merkle_proof(u1.leaves, block)),
                node=auditor.node_pub,
                account=auditor.acct,
                created=T0 + 50,
            )
        )
        before = olive.node.state().record_count
        confirmer.publish(
            CheckRecord(
                work_cid=w1,
                block=block,
                leaf=true_leaf,
                match=False,
                node=confirmer.node_pub,
                account=confirmer.acct,
                created=T0 + 60,
            )
        )

        def backtracked(st) -> bool:
            return (
                d in st.confirmed_disputes
                and {cole.acct, dora.acct} <= st.trust.slashed
                and st.status_of(0) != VERIFIED
                and st.units[0].reopened
            )

        _everywhere(peers, "the fraud proven, the colluders slashed, unit 0 re-opened", backtracked)
        for p in peers:
            st = p.node.state()
            assert st.account_weight(cole.acct) == 0 and st.account_weight(dora.acct) == 0
            assert st.account_weight(hank.acct) == policy.genesis_weight
            assert w0 in st.units[0].roots[0].work_cids  # no honest record deleted
            assert st.record_count >= before + 1
            assert st.frontier == 0
    finally:
        for p in reversed(peers):
            p.stop()


def _compute(peer: Peer, assignment) -> None:
    """What the compute loop does with an assignment: the real engine, then submit."""
    result = verify_range(PARAMS, assignment.lo, assignment.hi, backend="reference")
    peer.node.submit_unit(assignment, result)


def test_nodes_run_the_protocol_commit_reveal_beacon_drawn_checker_and_audit(tmp_path):
    # The node itself commits, reveals when its partner is bound, publishes beacon
    # rounds (olive), takes its checker duty from the draw and its audit duty too.
    names = ("olive", "hank", "dora")
    for n in names:
        PROFILES[n] = make_profile(tmp_path / n, n)
    acct = {n: PROFILES[n].account_public_key() for n in names}
    policy = T.TrustPolicy(
        genesis=frozenset({acct["olive"], acct["hank"]}), beacons=frozenset({acct["olive"]})
    )
    olive = Peer(tmp_path, "olive", [], policy).start()
    hank, dora = (Peer(tmp_path, n, [olive.address], policy).start() for n in names[1:])
    peers = [olive, hank, dora]
    try:
        _everywhere(peers, "delegations everywhere", lambda st: len(st.accounts) == 3)
        first = dora.node.next_assignment()
        assert first is not None and first.unit == 0
        _compute(dora, first)  # a commit, not yet a work record
        _everywhere(
            peers,
            "unit 0 committed and drawn",
            lambda st: st.units.get(0) is not None and st.trust.units[0].seed is not None,
        )
        assert not any(p.node.state().units[0].roots for p in peers)
        # Whoever the draw ranks first among dora's checkers takes the duty.
        st = olive.node.state()
        checker = next(p for p in peers if p.acct == st.trust.ranking(0, b"check", (dora.acct,))[0])
        duty = wait_until(checker.node.next_assignment, 30, "the checker's duty")
        assert duty.unit == 0
        _compute(checker, duty)
        _everywhere(peers, "the pair formed", lambda st: st.units[0].phase == T.PAIRED)
        pair = (dora.acct, checker.acct)
        auditor = next(
            p for p in peers if p.acct == olive.node.state().trust.ranking(0, b"audit", pair)[0]
        )
        task = wait_until(lambda: auditor.node.next_block_task(), 60, "the auditor's duty")
        evidence = run_block(load(PARAMS.sieve_k), task.lo, task.hi, PARAMS.exact_step_bound)
        auditor.node.submit_block(task, evidence)
        _everywhere(
            peers, "unit 0 verified by the protocol", lambda st: st.status_of(0) == VERIFIED
        )
        assert olive.node.state().account_weight(dora.acct) == 1
        status = dora.node.status().to_json("running")  # what the status file shows
        assert status["account_weight"] == 1 and status["phases"].get("verified") == 1
        assert status["candidate_units"] == [] and status["fetch"]["failed"] >= 0
    finally:
        for p in reversed(peers):
            p.stop()


def test_a_reporter_that_never_reveals_holds_its_unit_for_one_round_only(tmp_path):
    names = ("olive", "hank", "gina", "dora")
    for n in names:
        PROFILES[n] = make_profile(tmp_path / n, n)
    acct = {n: PROFILES[n].account_public_key() for n in names}
    policy = T.TrustPolicy(
        genesis=frozenset({acct["olive"], acct["hank"], acct["gina"]}),
        beacons=frozenset({acct["olive"]}),
    )
    olive = Peer(tmp_path, "olive", [], policy, trust_stall_s=3.0).start()
    others = [
        Peer(tmp_path, n, [olive.address], policy, trust_stall_s=3.0).start() for n in names[1:]
    ]
    dora = others[-1]
    peers = [olive, *others]
    try:
        _everywhere(peers, "delegations everywhere", lambda st: len(st.accounts) == 4)
        first = dora.node.next_assignment()
        _compute(dora, first)
        # dora withholds its reveal: the pending reveal is gone, only the commit is out.
        dora.node._reveal_path(0).unlink()
        _everywhere(
            peers,
            "unit 0 drawn",
            lambda st: (
                st.trust is not None and 0 in st.trust.units and st.trust.units[0].seed is not None
            ),
        )
        honest = peers[:3]

        def step() -> bool:
            for p in honest:
                duty = p.node.checker_duty()
                if duty is not None:
                    _compute(p, duty)
                task = p.node.next_block_task()
                if task is not None:
                    evidence = run_block(
                        load(PARAMS.sieve_k), task.lo, task.hi, PARAMS.exact_step_bound
                    )
                    p.node.submit_block(task, evidence)
            return all(p.node.state().status_of(0) == VERIFIED for p in peers)

        wait_until(step, 120, "the next round's pair to verify unit 0 without dora")
        st = olive.node.state()
        assert dora.acct not in (st.trust.units[0].reporter, st.trust.units[0].checker)
        assert not any(
            w.account == dora.acct
            for r in st.units[0].roots
            for w in [r]
            if dora.acct in r.accounts
        )
    finally:
        for p in reversed(peers):
            p.stop()
