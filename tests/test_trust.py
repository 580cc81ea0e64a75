"""The verification protocol's rules (network/trust.py, PROTOCOL §11) on hand-built
record sets: real signatures, real Merkle roots, derive_state with a trust policy."""

from __future__ import annotations

import os

import pytest
from nacl.signing import SigningKey

from engine.evidence import merkle_proof, merkle_root
from engine.params import Params
from network import codec
from network import trust as T
from network.records import (
    BeaconRecord,
    CheckRecord,
    CommitRecord,
    DelegationRecord,
    DisputeRecord,
    WorkRecord,
)
from network.rejection import Accepted
from network.state import CANDIDATE, DISPUTED, VERIFIED, derive_state

T0 = 1_750_000_000
PARAMS = Params.custom(name="trust-test", unit_bits=8, block_bits=4, sieve_k=4)
BLOCKS = PARAMS.blocks_per_unit
EVIDENCE = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


class Person:
    def __init__(self, i: int) -> None:
        self.account = SigningKey(bytes([i]) * 32)
        self.node = SigningKey(bytes([100 + i]) * 32)
        self.acct = bytes(self.account.verify_key)
        self.node_pub = bytes(self.node.verify_key)


def _ok(signed) -> Accepted:
    return Accepted(record=signed, cid=codec.record_cid(signed))


GENESIS = [Person(i) for i in range(1, 7)]
FRESH = [Person(i) for i in range(20, 26)]
BEACON = Person(50)
EVERYONE = GENESIS + FRESH + [BEACON]
POLICY = T.TrustPolicy(genesis=frozenset(p.acct for p in GENESIS), beacons=frozenset({BEACON.acct}))

LEAVES: dict[bytes, list[bytes]] = {}


def leaves_for(seed: int) -> list[bytes]:
    leaves = [bytes([seed, b]) + bytes(30) for b in range(BLOCKS)]
    LEAVES[merkle_root(leaves)] = leaves
    return leaves


def delegations() -> list[Accepted]:
    return [
        _ok(codec.sign(DelegationRecord(account=p.acct, node=p.node_pub, created=T0), p.account))
        for p in EVERYONE
    ]


class Unit:
    """Builds the records of one unit: commits, a beacon round, reveals, audits."""

    def __init__(self, unit: int) -> None:
        self.unit = unit
        self.nonces: dict[bytes, bytes] = {}
        self.commit_cids: dict[bytes, str] = {}
        self.records: list[Accepted] = []

    def commit(self, p: Person, root: bytes) -> str:
        nonce = os.urandom(32)
        self.nonces[p.acct] = nonce
        rec = CommitRecord(
            unit=self.unit,
            commitment=T.commitment(self.unit, root, p.node_pub, nonce),
            node=p.node_pub,
            account=p.acct,
            created=T0 + 10,
        )
        acc = _ok(codec.sign(rec, p.node))
        self.commit_cids[p.acct] = acc.cid
        self.records.append(acc)
        return acc.cid

    def beacon(self) -> bytes:
        """Publish the next beacon round listing every commit and reveal not yet listed;
        return the unit's seed (from the first round)."""
        self.round = getattr(self, "round", 0) + 1
        listed = getattr(self, "listed", set())
        fresh = {r.cid for r in self.records if r.record.kind in ("commit", "work")} - listed
        self.listed = listed | fresh
        value = bytes([self.round, self.unit % 256]) * 16
        rec = BeaconRecord(
            round=self.round,
            value=value,
            listed=tuple(sorted(fresh)),
            node=BEACON.node_pub,
            account=BEACON.acct,
            created=T0 + 20,
        )
        self.records.append(_ok(codec.sign(rec, BEACON.node)))
        if self.round == 1:
            self.seed = T.draw_seed(value, self.unit)
        return self.seed

    def reveal(self, p: Person, root: bytes, seen: tuple[str, ...], nonce: bytes | None = None):
        rec = WorkRecord(
            params=PARAMS,
            unit=self.unit,
            root=root,
            evidence_cid=EVIDENCE,
            tested=10,
            odd_steps=100,
            max_value=1000,
            max_n=PARAMS.start + 1,
            overflows=0,
            backend="cpu",
            compute_ms=5,
            node=p.node_pub,
            account=p.acct,
            created=T0 + 30,
            nonce=nonce if nonce is not None else self.nonces[p.acct],
            seen_commits=tuple(sorted(seen)),
        )
        acc = _ok(codec.sign(rec, p.node))
        self.records.append(acc)
        return acc

    def check(self, p: Person, work: Accepted, block: int, *, match=True, unavailable=False):
        rec = CheckRecord(
            work_cid=work.cid,
            block=block,
            leaf=bytes(32) if unavailable else LEAVES[work.record.record.root][block],
            match=match,
            node=p.node_pub,
            account=p.acct,
            created=T0 + 40,
            unavailable=unavailable,
        )
        acc = _ok(codec.sign(rec, p.node))
        self.records.append(acc)
        return acc


def honest_unit(unit: int, reporter: Person, pool: list[Person], weights=None, root_seed=1):
    """A unit verified by the rules: reporter, the drawn checker, the drawn auditor."""
    u = Unit(unit)
    root = merkle_root(leaves_for(root_seed))
    weights = weights or {p.acct: POLICY.genesis_weight for p in GENESIS}
    # Everyone in the pool commits (cheap) so the beacon sees the unit before any draw.
    u.commit(reporter, root)
    seed = u.beacon()
    by_key = {p.acct: p for p in pool}
    checker = by_key[T.ranking(seed, b"check", weights, exclude=(reporter.acct,))[0]]
    u.commit(checker, root)
    u.beacon()  # round 2 lists the checker's commit
    a = u.reveal(reporter, root, (u.commit_cids[checker.acct],))
    c = u.reveal(checker, root, (u.commit_cids[reporter.acct],))
    auditor = by_key[T.ranking(seed, b"audit", weights, exclude=(reporter.acct, checker.acct))[0]]
    u.check(auditor, a, T.audit_block(seed, auditor.acct, BLOCKS))
    return u, seed, root, checker, auditor, (a, c)


def state_of(*groups, confirmed=(), refuted=()):
    records = delegations()
    for g in groups:
        records.extend(g if isinstance(g, list) else g.records)
    return derive_state(records, PARAMS, confirmed, trust=POLICY, refuted_dispute_cids=refuted)


def test_a_unit_with_commits_reveals_drawn_checker_and_audit_is_verified():
    u, _seed, root, checker, auditor, _ = honest_unit(0, FRESH[0], GENESIS)
    st = state_of(u)
    assert st.status_of(0) == VERIFIED and st.units[0].phase == T.VERIFIED
    assert st.units[0].verified_root == root
    assert st.frontier == 1
    # The fresh reporter earned weight through work a weighted checker matched.
    assert st.account_weight(FRESH[0].acct) == 1
    assert st.account_weight(checker.acct) == POLICY.genesis_weight + 1
    assert st.account_weight(auditor.acct) == POLICY.genesis_weight


def test_without_the_audit_the_unit_is_only_paired():
    u, *_ = honest_unit(0, FRESH[0], GENESIS)
    u.records.pop()  # the audit
    st = state_of(u)
    assert st.status_of(0) != VERIFIED and st.units[0].phase == T.PAIRED
    assert st.frontier == 0


def test_a_reveal_without_its_commit_does_not_count():
    u, *_ = honest_unit(0, FRESH[0], GENESIS)
    commits = [r for r in u.records if r.record.kind == "commit"]
    u.records.remove(commits[1])  # the checker's commit
    st = state_of(u)
    assert st.status_of(0) != VERIFIED


def test_a_reveal_with_another_nonce_does_not_match_its_commit():
    u, _seed, root, checker, *_ = honest_unit(0, FRESH[0], GENESIS)
    u.records = [
        r
        for r in u.records
        if not (r.record.kind == "work" and r.record.record.account == checker.acct)
    ]
    u.reveal(checker, root, (u.commit_cids[FRESH[0].acct],), nonce=bytes(32))
    assert state_of(u).status_of(0) != VERIFIED


def test_copying_a_revealed_root_cannot_pair():
    # The checker committed only after the reporter's reveal was public: the reporter's
    # reveal does not list the checker's commit, so the two never pair.
    u = Unit(0)
    root = merkle_root(leaves_for(1))
    weights = {p.acct: POLICY.genesis_weight for p in GENESIS}
    u.commit(FRESH[0], root)
    seed = u.beacon()
    a = u.reveal(FRESH[0], root, ())
    checker = next(
        p for p in GENESIS if p.acct == T.ranking(seed, b"check", weights, (FRESH[0].acct,))[0]
    )
    u.commit(checker, root)
    u.beacon()
    u.reveal(checker, root, (u.commit_cids[FRESH[0].acct],))
    auditor = next(
        p
        for p in GENESIS
        if p.acct == T.ranking(seed, b"audit", weights, (FRESH[0].acct, checker.acct))[0]
    )
    u.check(auditor, a, T.audit_block(seed, auditor.acct, BLOCKS))
    assert state_of(u).units[0].phase == T.REVEALED


def test_a_commit_made_after_a_reveal_of_the_same_root_cannot_pair():
    # R revealed its root (a beacon round dates the reveal). X commits the same root
    # only afterwards, then pairs properly with its drawn checker: X may have copied,
    # so the pair does not count, though every other rule holds.
    u = Unit(0)
    root = merkle_root(leaves_for(1))
    weights = {p.acct: POLICY.genesis_weight for p in GENESIS}
    r_p, x_p = FRESH[0], FRESH[1]
    u.commit(r_p, root)
    seed = u.beacon()
    u.reveal(r_p, root, ())
    u.beacon()  # round 2 lists R's reveal
    u.commit(x_p, root)
    by_key = {p.acct: p for p in GENESIS}
    checker = by_key[T.ranking(seed, b"check", weights, exclude=(x_p.acct,))[0]]
    u.commit(checker, root)
    u.beacon()  # round 3 lists X's and the checker's commits
    x = u.reveal(x_p, root, (u.commit_cids[checker.acct],))
    u.reveal(checker, root, (u.commit_cids[x_p.acct],))
    auditor = by_key[T.ranking(seed, b"audit", weights, exclude=(x_p.acct, checker.acct))[0]]
    u.check(auditor, x, T.audit_block(seed, auditor.acct, BLOCKS))
    assert state_of(u).units[0].phase == T.REVEALED
    # The same records without R's earlier reveal verify: the rule is what stopped it.
    u.records = [
        r
        for r in u.records
        if not (r.record.kind == "work" and r.record.record.account == r_p.acct)
    ]
    assert state_of(u).units[0].phase == T.VERIFIED


def test_two_drawn_accounts_may_confirm_a_root_that_is_already_public():
    # R's root is public and R has no partner (say its checker was slashed). The two
    # best-drawn accounts commit afterwards and pair: the unit can still be verified,
    # which no other late pair can do (previous test).
    u = Unit(0)
    root = merkle_root(leaves_for(1))
    weights = {p.acct: POLICY.genesis_weight for p in GENESIS}
    r_p = FRESH[0]
    u.commit(r_p, root)
    seed = u.beacon()
    u.reveal(r_p, root, ())
    u.beacon()
    by_key = {p.acct: p for p in GENESIS}
    core = [by_key[a] for a in T.ranking(seed, b"check", weights)[:2]]
    reporter = core[0]
    checker = by_key[T.ranking(seed, b"check", weights, exclude=(reporter.acct,))[0]]
    assert checker is core[1]
    for p in (reporter, checker):
        u.commit(p, root)
    u.beacon()
    x = u.reveal(reporter, root, (u.commit_cids[checker.acct],))
    u.reveal(checker, root, (u.commit_cids[reporter.acct],))
    pair = (reporter.acct, checker.acct)
    auditor = by_key[T.ranking(seed, b"audit", weights, exclude=pair)[0]]
    u.check(auditor, x, T.audit_block(seed, auditor.acct, BLOCKS))
    st = state_of(u)
    assert st.units[0].phase == T.VERIFIED
    assert {st.trust.units[0].reporter, st.trust.units[0].checker} == set(pair)


def test_fresh_accounts_carry_no_weight_so_two_of_them_verify_nothing():
    u = Unit(0)
    root = merkle_root(leaves_for(9))
    a_p, b_p, c_p = FRESH[:3]
    for p in (a_p, b_p):
        u.commit(p, root)
    u.beacon()
    a = u.reveal(a_p, root, (u.commit_cids[b_p.acct],))
    u.reveal(b_p, root, (u.commit_cids[a_p.acct],))
    for block in range(BLOCKS):
        u.check(c_p, a, block)  # a third fresh account "audits" every block
    st = state_of(u)
    assert st.status_of(0) != VERIFIED
    assert st.account_weight(a_p.acct) == 0 and st.account_weight(b_p.acct) == 0


def test_a_checker_outside_the_draw_does_not_count():
    u = Unit(0)
    root = merkle_root(leaves_for(1))
    weights = {p.acct: POLICY.genesis_weight for p in GENESIS}
    u.commit(FRESH[0], root)
    seed = u.beacon()
    order = T.ranking(seed, b"check", weights, exclude=(FRESH[0].acct,))
    outsider = next(p for p in GENESIS if p.acct == order[-1])  # ranked last of six
    u.commit(outsider, root)
    u.beacon()
    a = u.reveal(FRESH[0], root, (u.commit_cids[outsider.acct],))
    u.reveal(outsider, root, (u.commit_cids[FRESH[0].acct],))
    for p in GENESIS:
        if p is not outsider:
            u.check(p, a, T.audit_block(seed, p.acct, BLOCKS))
    assert state_of(u).units[0].phase == T.REVEALED


def test_an_audit_of_a_block_the_draw_did_not_pick_does_not_count():
    u, seed, _root, _checker, auditor, (a, _c) = honest_unit(0, FRESH[0], GENESIS)
    u.records.pop()
    wrong = (T.audit_block(seed, auditor.acct, BLOCKS) + 1) % BLOCKS
    u.check(auditor, a, wrong)
    assert state_of(u).units[0].phase == T.PAIRED


def test_withheld_evidence_keeps_the_unit_open():
    u, seed, _root, checker, _auditor, (a, _c) = honest_unit(0, FRESH[0], GENESIS)
    u.records.pop()  # no successful audit: nobody could fetch the leaves
    others = [p for p in GENESIS if p.acct not in (checker.acct,)][:2]
    for p in others:
        u.check(p, a, 0, match=False, unavailable=True)
    st = state_of(u)
    assert st.units[0].phase == T.WITHHELD and st.status_of(0) != VERIFIED


def test_a_weighted_account_with_another_root_blocks_verification():
    u, _seed, _root, checker, *_ = honest_unit(0, FRESH[0], GENESIS)
    other = next(p for p in GENESIS if p.acct != checker.acct)
    bad = merkle_root(leaves_for(7))
    u.commit(other, bad)
    u.reveal(other, bad, ())
    st = state_of(u)
    assert st.status_of(0) != VERIFIED and st.units[0].phase == T.CONFLICTING


def test_a_candidate_is_never_verified_under_the_protocol_either():
    u, _seed, root, checker, *_ = honest_unit(0, FRESH[0], GENESIS)
    rec = WorkRecord(
        params=PARAMS,
        unit=0,
        root=root,
        evidence_cid=EVIDENCE,
        tested=10,
        odd_steps=90,
        max_value=1000,
        max_n=PARAMS.start + 1,
        overflows=0,
        candidates=(PARAMS.start + 3,),
        backend="cpu",
        compute_ms=5,
        node=FRESH[1].node_pub,
        account=FRESH[1].acct,
        created=T0 + 50,
    )
    u.records.append(_ok(codec.sign(rec, FRESH[1].node)))
    assert state_of(u).status_of(0) == CANDIDATE


def _dispute(p: Person, work: Accepted, block: int) -> Accepted:
    root = work.record.record.root
    leaves = LEAVES[root]
    rec = DisputeRecord(
        work_cid=work.cid,
        block=block,
        recomputed_leaf=bytes([0xEE]) * 32,
        claimed_leaf=leaves[block],
        proof=tuple(merkle_proof(leaves, block)),
        node=p.node_pub,
        account=p.acct,
        created=T0 + 60,
    )
    return _ok(codec.sign(rec, p.node))


def test_a_proven_fraud_slashes_and_reopens_every_unit_the_account_helped_verify():
    cheat = FRESH[0]
    u0, _s, _r, checker0, _a, (w0, _c0) = honest_unit(0, cheat, GENESIS, root_seed=1)
    # Unit 2: the cheat reports a wrong root; an honest dispute proves one block wrong.
    u2 = Unit(2)
    bad_root = merkle_root(leaves_for(3))
    u2.commit(cheat, bad_root)
    u2.beacon()
    w2 = u2.reveal(cheat, bad_root, ())
    before = state_of(u0, u2)
    assert before.status_of(0) == VERIFIED
    assert before.account_weight(cheat.acct) == 1
    honest = next(p for p in GENESIS if p.acct != checker0.acct)
    d = _dispute(honest, w2, 5)
    after = state_of(u0, u2, [d], confirmed=(d.cid,))
    assert cheat.acct in after.trust.slashed
    assert after.account_weight(cheat.acct) == 0
    assert after.status_of(0) != VERIFIED and after.units[0].reopened
    assert after.status_of(2) == DISPUTED
    # The checker lost what it earned with the cheat; no honest record was deleted.
    assert after.account_weight(checker0.acct) == POLICY.genesis_weight
    assert after.record_count == before.record_count + 1
    assert w0.cid in after.units[0].roots[0].work_cids


def test_a_false_accusation_costs_the_accuser_all_weight():
    u, _seed, _root, checker, auditor, (a, _c) = honest_unit(0, FRESH[0], GENESIS)
    liar = next(p for p in GENESIS if p.acct not in (checker.acct, auditor.acct))
    d = _dispute(liar, a, 3)
    st = state_of(u, [d], refuted=(d.cid,))
    assert liar.acct in st.trust.penalised and st.account_weight(liar.acct) == 0
    assert st.status_of(0) == VERIFIED  # the accused work stands
    assert d.cid in st.trust.false_accusations


def test_policy_refuses_nonsense():
    with pytest.raises(ValueError):
        T.TrustPolicy(check_rank=0)


def test_the_root_of_trust_comes_from_the_settings_explicitly():
    from pathlib import Path

    from network.node import NodeConfig, trust_policy

    g, b = GENESIS[0].acct, BEACON.acct
    cfg = NodeConfig.from_settings(
        {"trust_genesis": [g.hex()], "trust_beacons": [b.hex()]},
        data_dir=Path("/nonexistent"),
        params=PARAMS,
    )
    assert cfg.trust is not None
    assert cfg.trust.genesis == frozenset({g}) and cfg.trust.beacons == frozenset({b})
    off = NodeConfig.from_settings({}, data_dir=Path("/nonexistent"), params=PARAMS)
    assert off.trust is None  # no genesis account named: the protocol is off
    with pytest.raises(ValueError, match="64 hex"):
        trust_policy(["abc"], [])
    with pytest.raises(ValueError, match="no genesis"):
        trust_policy([], [b.hex()])
