"""The node's jobs in isolation (network/nodeparts/: store, sync, publisher, planner,
checks, trust duty) and the one delegation rule, over the in-memory IpfsNode and a
real ledger; no Node, no threads, a clock that stands still.

The whole node over the same IpfsNode: tests/test_node_memory.py; over kubo:
tests/test_network_nodes.py.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from network import codec, wire
from network import rejection as R
from network.ipfs import cid_for_bytes
from network.ipfs.memory import MemorySwarm
from network.ledger import Ledger, stored_record
from network.nodeparts.checks import BlockChecks
from network.nodeparts.heads import HeadBook
from network.nodeparts.planner import Planner
from network.nodeparts.publisher import REANNOUNCE_BACKOFF_MAX, Publisher
from network.nodeparts.ratelimit import PeerRateLimiter
from network.nodeparts.services import Services
from network.nodeparts.store import RecordStore
from network.nodeparts.sync import Sync
from network.nodeparts.trustduty import TrustDuty
from network.records import CommitRecord, DelegationRecord
from network.rejection import Accepted, Rejection
from network.state import derive_state
from network.trust import TrustPolicy
from network.validate import Delegations, authorised, context
from tests.test_state import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    PARAMS,
    T0,
    Person,
    account,
    delegation,
    dispute,
    work,
)

NOW = T0 + 1000


class Parts:
    """One node's services and store, with what the store reported accepted."""

    def __init__(self, tmp_path, swarm: MemorySwarm, me: Person = ALICE) -> None:
        self.events: list[tuple[str, str, str | None]] = []
        self.accepted: list[str] = []
        self.services = Services(
            PARAMS, me.node, me.acct, lambda: NOW, lambda k, d, c: self.events.append((k, d, c))
        )
        self.services.opened_ledger = Ledger.in_dir(tmp_path, clock=lambda: NOW)
        self.services.opened_ipfs = swarm.node("me")
        self.listeners = []
        self.store = RecordStore(
            self.services,
            param_sets=(PARAMS,),
            trust=None,
            max_skew_s=600,
            on_accept=self._accepted,
        )

    def _accepted(self, signed, cid: str, source: str) -> None:
        self.accepted.append(cid)
        for listener in self.listeners:
            listener(signed, cid)

    def close(self) -> None:
        self.services.ledger.close()


@pytest.fixture
def parts(tmp_path):
    p = Parts(tmp_path, MemorySwarm())
    yield p
    p.close()


def _bytes(accepted: Accepted) -> bytes:
    return codec.encode(accepted.record)


def _commit(p: Person, unit: int = 0, created: int = T0 + 10) -> Accepted:
    rec = CommitRecord(
        unit=unit, commitment=bytes(32), node=p.node_pub, account=p.acct, created=created
    )
    signed = codec.sign(rec, p.node)
    return Accepted(record=signed, cid=codec.record_cid(signed))


# ---- the delegation rule, once for validation and the state ---------------------------


@pytest.mark.parametrize(
    ("records", "t", "reason"),
    [
        ((), T0, R.NO_DELEGATION),
        (((T0, 0, False),), T0 - 1, R.NO_DELEGATION),  # before the delegation
        (((T0, 0, False),), T0, None),
        (((T0, T0 + 5, False),), T0 + 5, R.DELEGATION_EXPIRED),
        (((T0, T0 + 5, False), (T0 + 1, 0, False)), T0 + 9, None),  # a later grant
        (((T0, 0, False), (T0 + 3, 0, True)), T0 + 2, None),
        (((T0, 0, False), (T0 + 3, 0, True)), T0 + 3, R.NODE_REVOKED),
        (((T0, 0, False), (T0 + 3, 0, True), (T0 + 4, 0, False)), T0 + 9, R.NODE_REVOKED),
    ],
)
def test_validation_and_the_state_share_one_delegation_rule(records, t, reason) -> None:
    delegations = [
        DelegationRecord(
            account=ALICE.acct, node=ALICE.node_pub, created=c, expires=e, revoked=revoked
        )
        for c, e, revoked in records
    ]
    verdict = Delegations.of(delegations).verdict(ALICE.acct, ALICE.node_pub, t)
    assert (None if verdict is None else verdict.reason_code) == reason
    via_context = authorised(context(t, delegations), ALICE.acct, ALICE.node_pub, t)
    assert (None if via_context is None else via_context.reason_code) == reason
    # The state counts a record exactly when validation would accept its signer.
    signed = [codec.sign(d, ALICE.account) for d in delegations]
    signed = [Accepted(record=s, cid=codec.record_cid(s)) for s in signed]
    w = work(ALICE, 0, created=t)
    st = derive_state([*signed, w], PARAMS)
    assert (w.cid in st.ignored) == (reason is not None)


# ---- RecordStore ------------------------------------------------------------------------


def test_a_record_before_its_delegation_waits_and_is_stored_when_it_arrives(parts) -> None:
    commit, deleg = _commit(BOB), delegation(BOB)
    verdict = parts.store.ingest(_bytes(commit), "peer")
    assert isinstance(verdict, Rejection) and verdict.reason_code == R.NO_DELEGATION
    assert parts.store.is_pending(commit.cid) and not parts.store.refused(commit.cid)
    assert parts.store.counts() == (0, 1)
    assert isinstance(parts.store.ingest(_bytes(deleg), "peer"), Accepted)
    assert parts.store.holds(commit.cid) and parts.store.holds(deleg.cid)
    assert parts.store.counts() == (2, 0)
    assert sorted(parts.accepted) == sorted([commit.cid, deleg.cid])
    assert parts.store.state().record_count == 2  # the cached state was dropped
    assert parts.store.ingest(_bytes(commit), "peer") is None  # known: nothing happens
    # Both are in the ledger and served from IPFS (our head lists them).
    assert {r.cid for r in parts.services.ledger.records()} == {commit.cid, deleg.cid}
    assert parts.services.ipfs.get(commit.cid, 1.0, 10_000) == _bytes(commit)


def test_identity_records_are_indexed_not_kept_and_reads_by_kind_see_only_their_kind(
    parts,
) -> None:
    """Account and delegation records live in the identity index (and the ledger), not
    in the per-kind tables the node's loops read: a flood of them costs those reads
    nothing (bench/fresh_accounts.py)."""
    bob_deleg, carol_deleg = delegation(BOB), delegation(CAROL)
    identities = (account(BOB, "bobby"), bob_deleg, carol_deleg)
    commits = [_commit(BOB, unit=u) for u in (2, 0, 1)] + [_commit(CAROL, unit=5)]
    verdicts = parts.store.ingest_many([(_bytes(r), "peer") for r in (*identities, *commits)])
    assert all(isinstance(v, Accepted) for v in verdicts)
    assert all(parts.store.holds(r.cid) for r in (*identities, *commits))
    assert parts.store.counts() == (7, 0)
    kept = parts.store.by_kind("commit")
    assert [c for c, _ in kept] == sorted(r.cid for r in commits)
    assert {p.unit for _, p in kept} == {0, 1, 2, 5}
    assert parts.store.by_kind("work") == []
    with pytest.raises(ValueError, match="indexed"):
        parts.store.by_kind("delegation")
    # The index still answers for them: validation, the state's directory, our head.
    assert parts.store.authorised(BOB.acct, BOB.node_pub, T0 + 10) is None
    st = parts.store.state()
    assert st.record_count == 7
    assert st.accounts[BOB.acct].nodes == (BOB.node_pub,)
    assert st.accounts[BOB.acct].display_name == "bobby"
    assert sorted(c for page in parts.store.page_lists() for c in page) == sorted(
        r.cid for r in (*identities, *commits)
    )
    assert parts.store.ingest(_bytes(bob_deleg), "peer") is None  # held: nothing happens


def test_a_refused_record_is_counted_and_remembered(parts) -> None:
    parts.store.ingest(_bytes(delegation(BOB)), "peer")
    future = _commit(BOB, created=NOW + 3600)  # beyond the allowed clock skew
    verdict = parts.store.ingest(_bytes(future), "peer")
    assert isinstance(verdict, Rejection) and verdict.reason_code == R.FROM_FUTURE
    assert parts.store.refused(future.cid) and parts.store.known(future.cid)
    assert not parts.store.holds(future.cid)
    assert parts.services.ledger.rejection_counts() == {R.FROM_FUTURE: 1}
    # A record that does not even parse is counted too, but there is no CID to remember.
    assert isinstance(parts.store.ingest(b"not a record", "peer"), Rejection)
    assert sum(parts.services.ledger.rejection_counts().values()) == 2


def test_pending_records_are_forgotten_only_when_old_and_counted(parts) -> None:
    commit = _commit(BOB)
    parts.store.ingest(_bytes(commit), "peer")
    assert parts.store.forget_pending(older_than=0.0) == 0
    assert parts.store.is_pending(commit.cid)
    assert parts.services.ledger.rejection_counts() == {}  # waiting is not a rejection
    assert parts.store.forget_pending(older_than=time.monotonic() + 1.0) == 1
    assert not parts.store.is_pending(commit.cid)
    assert parts.services.ledger.rejection_counts() == {R.NO_DELEGATION: 1}


def test_only_records_waiting_on_what_arrived_are_validated_again(parts, monkeypatch) -> None:
    # A backlog of records whose delegation never comes must cost nothing when an
    # unrelated delegation or work record is accepted (it once re-validated them all).
    import network.nodeparts.store as store_module

    waiting = [_commit(BOB, created=T0 + 10 + i) for i in range(20)]
    for c in waiting:
        parts.store.ingest(_bytes(c), "peer")
    carol_commit = _commit(CAROL)
    parts.store.ingest(_bytes(carol_commit), "peer")
    calls: list[object] = []
    real_validate = store_module.validate
    monkeypatch.setattr(
        store_module, "validate", lambda s, ctx, **kw: calls.append(s) or real_validate(s, ctx, **kw)
    )
    parts.store.ingest(_bytes(delegation(CAROL)), "peer")  # CAROL's: Bob's stay put
    assert len(calls) == 2  # the delegation itself and Carol's commit, nothing of Bob's
    assert parts.store.holds(carol_commit.cid)
    assert all(parts.store.is_pending(c.cid) for c in waiting)
    calls.clear()
    parts.store.ingest(_bytes(delegation(BOB)), "peer")
    assert len(calls) == 1 + len(waiting)
    assert all(parts.store.holds(c.cid) for c in waiting)


def test_a_batch_is_one_ledger_transaction_and_may_carry_its_own_delegation(
    parts, monkeypatch
) -> None:
    deleg, commits = delegation(BOB), [_commit(BOB, created=T0 + 10 + i) for i in range(5)]
    writes: list[int] = []
    real = parts.services.ledger.add_records

    def counted_write(rows):
        rows = list(rows)
        writes.append(len(rows))
        return real(rows)

    monkeypatch.setattr(parts.services.ledger, "add_records", counted_write)
    items = [(_bytes(c), "peer") for c in (deleg, *commits)] + [(_bytes(deleg), "peer")]
    verdicts = parts.store.ingest_many(items)
    assert [isinstance(v, Accepted) for v in verdicts] == [True] * 6 + [False]
    assert verdicts[-1] is None  # the repeat within the batch
    assert writes == [6]  # one transaction, one fsync
    assert all(parts.store.holds(c.cid) for c in (deleg, *commits))
    assert sorted(parts.accepted) == sorted(c.cid for c in (deleg, *commits))


def test_a_held_record_is_known_by_its_hash_and_not_parsed_again(parts, monkeypatch) -> None:
    # A page's bundle brings mostly records held, and a flood replays them: each
    # once cost a parse and an Ed25519 check before it was found to be held.
    import network.nodeparts.store as store_module

    deleg, commit = delegation(BOB), _commit(BOB)
    held = parts.store.ingest_many([(_bytes(deleg), "peer"), (_bytes(commit), "peer")])
    assert all(isinstance(v, Accepted) for v in held)
    parsed: list[bytes] = []
    real_parse = store_module.codec.parse
    monkeypatch.setattr(store_module.codec, "parse", lambda d: parsed.append(d) or real_parse(d))
    fresh = _commit(BOB, created=T0 + 11)
    given = (commit, deleg, fresh, fresh)
    verdicts = parts.store.ingest_many([(_bytes(r), "bundle") for r in given])
    assert verdicts[:2] == [None, None] and verdicts[3] is None  # known: nothing changes
    assert isinstance(verdicts[2], Accepted)
    assert parsed == [_bytes(fresh)]  # only the record not yet held was parsed
    assert sorted(parts.accepted) == sorted((deleg.cid, commit.cid, fresh.cid))
    assert parts.services.ledger.rejection_counts() == {}


def test_a_batch_the_ledger_cannot_store_leaves_nothing_held(parts, monkeypatch) -> None:
    from network.ledger import LedgerError

    deleg, commit = delegation(BOB), _commit(BOB)

    def full_disk(rows):
        raise LedgerError("disk_full", "database or disk is full")

    monkeypatch.setattr(parts.services.ledger, "add_records", full_disk)
    verdicts = parts.store.ingest_many([(_bytes(deleg), "peer"), (_bytes(commit), "peer")])
    assert verdicts == [None, None]
    assert not parts.store.holds(deleg.cid) and not parts.store.holds(commit.cid)
    assert not parts.store.refused(commit.cid) and parts.accepted == []
    assert parts.store.state().record_count == 0
    monkeypatch.undo()
    # Offered again (a peer's head lists them), they are stored.
    parts.store.ingest_many([(_bytes(deleg), "peer"), (_bytes(commit), "peer")])
    assert parts.store.holds(deleg.cid) and parts.store.holds(commit.cid)


def test_a_full_pending_set_counts_what_it_cannot_hold(parts, monkeypatch) -> None:
    monkeypatch.setattr(parts.store._pending, "_limit", 2)
    commits = [_commit(BOB, created=T0 + 10 + i) for i in range(3)]
    for c in commits:
        verdict = parts.store.ingest(_bytes(c), "peer")
        assert isinstance(verdict, Rejection) and verdict.reason_code == R.NO_DELEGATION
    assert [parts.store.is_pending(c.cid) for c in commits] == [True, True, False]
    assert not parts.store.refused(commits[2].cid)  # may still be offered again later
    assert parts.services.ledger.rejection_counts() == {R.NO_DELEGATION: 1}


def test_the_last_state_is_kept_until_someone_asks_for_the_state_again(parts) -> None:
    parts.store.load([stored_record(d.record) for d in (delegation(ALICE), delegation(BOB))])
    first = parts.store.state()
    assert parts.store.last_state() is first
    report = work(BOB, 0)
    parts.store.load([stored_record(report.record)])
    # A record arrived: the last state is the older one, the state is derived again.
    assert parts.store.last_state() is first and 0 not in first.units
    fresh = parts.store.state()
    assert fresh is not first and fresh.units[0].status == "reported_once"
    assert parts.store.last_state() is fresh


# ---- Sync -------------------------------------------------------------------------------


def test_a_claim_that_outran_its_delegation_takes_effect_when_it_arrives(parts) -> None:
    sync = Sync(parts.services, parts.store, HeadBook(), fetch_timeout_s=1.0)
    parts.listeners.append(lambda signed, _cid: sync.retry_claims())
    claim = wire.sign_claim(wire.Claim(3, BOB.node_pub, BOB.acct, NOW + 300), BOB.node)
    sync.on_message("peer", claim)
    assert parts.services.ledger.active_claims(NOW) == []
    parts.store.ingest(_bytes(delegation(BOB)), "peer")
    assert [(c.unit, c.account) for c in parts.services.ledger.active_claims(NOW)] == [
        (3, BOB.acct)
    ]


def test_an_announced_cid_is_queued_once_and_held_records_are_not(parts) -> None:
    sync = Sync(parts.services, parts.store, HeadBook(), fetch_timeout_s=1.0)
    deleg = delegation(BOB)
    parts.store.ingest(_bytes(deleg), "peer")
    unknown = cid_for_bytes(b"a record nobody sent us yet")
    too_long_to_inline = bytes(wire.INLINE_LIMIT + 1)  # so the CID travels alone
    for cid in (unknown, deleg.cid):
        sync.on_message("peer", wire.encode_announcement(too_long_to_inline, cid))
    assert sync.fetches.counters().backlog == 1
    assert not sync.idle()


def test_a_batch_is_taken_record_by_record_and_costs_one_message_each(parts) -> None:
    sync = Sync(parts.services, parts.store, HeadBook(), fetch_timeout_s=1.0)
    sync.rates = PeerRateLimiter(rate_per_s=0.001, burst=4)  # four messages' worth
    deleg, good = delegation(BOB), _commit(BOB)
    signed = _commit(BOB, unit=1).record
    forged = dataclasses.replace(signed, signature=bytes(64))  # a signature that fails
    forged_cid = codec.record_cid(forged)
    batch = [(deleg.cid, _bytes(deleg)), (forged_cid, codec.encode(forged)), (good.cid, _bytes(good))]
    ((message, _cids),) = wire.encode_announcements(batch)
    sync.on_message("peer", message)
    # each record judged on its own, as if it had come alone
    assert parts.store.holds(deleg.cid) and parts.store.holds(good.cid)
    assert not parts.store.holds(forged_cid)
    assert parts.services.ledger.rejection_counts() == {R.BAD_SIGNATURE: 1}
    # three of the four tokens are spent: a batch of two is refused whole, counted once
    later = [_commit(BOB, unit=u) for u in (2, 3)]
    ((message, _cids),) = wire.encode_announcements([(a.cid, _bytes(a)) for a in later])
    sync.on_message("peer", message)
    assert not any(parts.store.holds(a.cid) for a in later)
    assert parts.services.ledger.rejection_counts() == {R.BAD_SIGNATURE: 1, R.RATE_LIMITED: 1}


def test_messages_read_together_store_their_records_in_one_transaction(parts, monkeypatch) -> None:
    sync = Sync(parts.services, parts.store, HeadBook(), fetch_timeout_s=1.0)
    ledger = parts.services.ledger
    transactions: list[int] = []
    add_records = ledger.add_records

    def counted(recs):
        batch = list(recs)
        transactions.append(len(batch))
        return add_records(batch)

    monkeypatch.setattr(ledger, "add_records", counted)
    parts.listeners.append(lambda signed, _cid: sync.retry_claims())  # as the node does
    deleg, first, second = delegation(BOB), _commit(BOB), _commit(BOB, unit=1)
    claim = wire.sign_claim(wire.Claim(3, BOB.node_pub, BOB.acct, NOW + 300), BOB.node)
    ((batch, _cids),) = wire.encode_announcements(
        [(first.cid, _bytes(first)), (second.cid, _bytes(second))]
    )
    sync.on_messages([
        ("peer-a", wire.encode_announcement(_bytes(deleg), deleg.cid)),
        ("peer-b", b"not a message"),
        ("peer-a", claim),
        ("peer-c", batch),  # records that need the delegation above: judged after it
    ])
    assert transactions == [3]
    assert all(parts.store.holds(r.cid) for r in (deleg, first, second))
    assert ledger.rejection_counts() == {R.MALFORMED: 1}
    assert [(c.unit, c.account) for c in ledger.active_claims(NOW)] == [(3, BOB.acct)]


def test_a_record_waiting_for_its_work_has_the_work_asked_for_at_once(parts) -> None:
    sync = Sync(parts.services, parts.store, HeadBook(), fetch_timeout_s=1.0)
    parts.store.on_wait = sync.want_dependency  # (as the node wires it)
    for p in (BOB, CAROL):
        parts.store.ingest(_bytes(delegation(p)), "peer")
    target = work(BOB, 0)  # not held
    disputed = dispute(CAROL, target, 1, 99)
    sync.on_message("peer-c", wire.encode_announcement(_bytes(disputed), disputed.cid))
    assert parts.store.is_pending(disputed.cid)
    # queued under the peer that sent the dispute, once
    assert sync.fetches.get(timeout=0) == ("peer-c", ("record", target.cid, "peer-c"))
    assert sync.fetches.counters().backlog == 0
    # a dispute that came by a fetch (no peer to blame) queues it as our own job
    again = dispute(CAROL, target, 2, 99)
    parts.store.ingest(_bytes(again), "fetch")
    assert parts.store.is_pending(again.cid)
    assert sync.fetches.get(timeout=0) == ("", ("record", target.cid, ""))


# ---- Publisher --------------------------------------------------------------------------


def test_our_identity_goes_out_again_to_new_peers_at_most_every_30_s(parts, tmp_path) -> None:
    from network.nodeparts.publisher import IDENTITY_AGAIN_S

    publisher = Publisher(
        parts.services, parts.store, HeadBook(), evidence_dir=tmp_path / "evidence"
    )
    ipfs = parts.services.ipfs
    first, second = delegation(ALICE), _commit(ALICE)  # (any two records of ours)
    publisher.set_identity([first.record, second.record])
    assert not publisher.announce_identity_if_due(100.0)  # no new peer: nothing sent
    publisher.new_peers(100.0)
    assert publisher.announce_identity_if_due(100.0)
    ((topic, message),) = ipfs.published
    assert topic == parts.services.topic("records")
    batch = wire.decode_message(message)
    assert isinstance(batch, wire.Batch) and [codec.record_cid(r) for r in batch.records] == [
        first.cid,
        second.cid,
    ]
    assert not publisher.announce_identity_if_due(101.0)  # sent: not again on its own
    publisher.new_peers(110.0)  # another new peer, 10 s later: due 30 s after the last
    publisher.new_peers(120.0)
    assert not publisher.announce_identity_if_due(100.0 + IDENTITY_AGAIN_S - 1)
    assert publisher.announce_identity_if_due(100.0 + IDENTITY_AGAIN_S)
    assert len(ipfs.published) == 2


def test_our_record_is_in_the_outbox_before_it_is_announced(parts, tmp_path) -> None:
    publisher = Publisher(
        parts.services, parts.store, HeadBook(), evidence_dir=tmp_path / "evidence"
    )
    deleg = delegation(ALICE)
    cid = publisher.add_own(deleg.record)
    assert cid == deleg.cid and parts.store.holds(cid)
    ipfs = parts.services.ipfs
    assert [t for t, _m in ipfs.published] == [parts.services.topic("records")]
    ledger = parts.services.ledger
    assert [(e.cid, e.publish_count) for e in ledger.outbox()] == [(cid, 1)]
    publisher.reannounce()  # no peer's head lists it yet: announced again
    assert len(ipfs.published) == 2
    ledger.acknowledge([cid], "peer")
    publisher.reannounce()  # a peer has it: never again
    assert len(ipfs.published) == 2 and ledger.outbox() == []
    # A record that does not validate is refused and nothing is stored.
    refused = publisher.publish(_commit(CAROL).record)
    assert isinstance(refused, Rejection) and not parts.store.holds(_commit(CAROL).cid)


def test_an_unacknowledged_record_is_announced_again_less_and_less_often(parts, tmp_path) -> None:
    """Due after 1, 2, 4, ... re-announce intervals since the last announcement, at
    most REANNOUNCE_BACKOFF_MAX of them; without an interval, every entry at once."""
    t = [float(NOW)]
    parts.services.clock = lambda: t[0]
    publisher = Publisher(parts.services, parts.store, HeadBook(), evidence_dir=tmp_path / "e")
    publisher.add_own(delegation(ALICE).record)
    ipfs = parts.services.ipfs
    sent_at = []
    for second in range(0, 3000):
        t[0] = NOW + second
        before = len(ipfs.published)
        publisher.reannounce(10.0)
        if len(ipfs.published) > before:
            sent_at.append(second)
    gaps = [b - a for a, b in zip([0, *sent_at], sent_at, strict=False)]
    assert gaps[:7] == [10, 20, 40, 80, 160, 320, 320]
    assert set(gaps[5:]) == {10 * REANNOUNCE_BACKOFF_MAX}
    before = len(ipfs.published)
    publisher.reannounce()  # e.g. a peer just connected: now, whatever is due
    assert len(ipfs.published) == before + 1


def test_the_entries_due_are_announced_again_in_batches(parts, tmp_path) -> None:
    t = [float(NOW)]
    parts.services.clock = lambda: t[0]
    publisher = Publisher(parts.services, parts.store, HeadBook(), evidence_dir=tmp_path / "e")
    ours = [publisher.add_own(delegation(p).record) for p in (ALICE, BOB, CAROL)]
    ipfs = parts.services.ipfs
    before = len(ipfs.published)
    t[0] += 11.0  # all three due again (a 10 s interval)
    publisher.reannounce(10.0)
    (topic, message), = ipfs.published[before:]
    assert topic == parts.services.topic("records")
    batch = wire.decode_message(message)
    assert [codec.record_cid(codec.parse(r)) for r in batch.records] == ours
    ledger = parts.services.ledger
    assert [(e.cid, e.publish_count, e.published_at) for e in ledger.outbox()] == [
        (cid, 2, t[0]) for cid in ours
    ]


def test_our_head_is_published_and_only_changes_are_added_again(parts, tmp_path) -> None:
    heads = HeadBook()
    publisher = Publisher(parts.services, parts.store, heads, evidence_dir=tmp_path / "ev")
    publisher.add_own(delegation(ALICE).record)
    publisher.publish_head()
    publisher.publish_head()
    ipfs = parts.services.ipfs
    # (one gossip topic for every kind: the heads are told apart by their messages)
    heads_sent = [
        m
        for t, m in ipfs.published
        if t == parts.services.topic("heads") and isinstance(wire.decode_message(m), wire.Head)
    ]
    assert len(heads_sent) == 2
    assert heads.last_head_cid  # the spot-check seed now follows our head


def test_evidence_is_kept_as_a_file_and_served_again(parts, tmp_path) -> None:
    folder = tmp_path / "evidence"
    publisher = Publisher(parts.services, parts.store, HeadBook(), evidence_dir=folder)
    data = bytes(range(64))
    cid = parts.services.ipfs.add(data)
    publisher.add_evidence(cid, data, "evidence")
    assert (folder / cid).read_bytes() == data
    fresh = MemorySwarm().node("after-a-repo-loss")
    parts.services.opened_ipfs = fresh
    publisher.republish_evidence()
    assert fresh.get(cid, 1.0, 100) == data


# ---- BlockChecks ------------------------------------------------------------------------


def test_disputes_naming_one_block_are_confirmed_once(parts) -> None:
    checks = BlockChecks(
        parts.services,
        parts.store,
        lambda signed: "",
        lambda: "",
        trust=None,
        spot_check_share=0.0,
        fetch_timeout_s=1.0,
        evidence_retry_s=60.0,
    )
    target = work(BOB, 0)
    parts.store.load([stored_record(target.record)])
    first, second = dispute(CAROL, target, 1, 7), dispute(CAROL, target, 1, 8)
    other = dispute(CAROL, target, 2, 7)
    for d in (first, second, other):
        checks.note_accepted(d.record, d.cid)
    tasks = [checks.next_block_task() for _ in range(3)]
    assert [(t.purpose, t.block, t.dispute_cid) for t in tasks[:2]] == [
        ("confirm", 1, first.cid),
        ("confirm", 2, other.cid),
    ]
    assert tasks[2] is None  # no budget, not idle: nothing more
    lo, _ = PARAMS.unit_range(0)
    assert (tasks[0].lo, tasks[0].hi) == (lo + PARAMS.block_size, lo + 2 * PARAMS.block_size)


def test_the_spot_check_budget_grows_with_each_unit_reported(parts) -> None:
    checks = BlockChecks(
        parts.services,
        parts.store,
        lambda signed: "",
        lambda: "",
        trust=None,
        spot_check_share=0.5,
        fetch_timeout_s=1.0,
        evidence_retry_s=60.0,
    )
    checks.earn()
    assert checks.spot_budget == 0.5 * PARAMS.blocks_per_unit
    # Budget but nothing to check (no one else's work): no task, the budget is kept.
    assert checks.next_block_task() is None
    assert checks.spot_budget == 0.5 * PARAMS.blocks_per_unit


# ---- Planner ----------------------------------------------------------------------------


def _planner(parts: Parts, data_dir) -> Planner:
    publisher = Publisher(parts.services, parts.store, HeadBook(), evidence_dir=data_dir / "ev")
    return Planner(
        parts.services,
        parts.store,
        publisher,
        data_dir=data_dir,
        trust=None,
        claim_ttl_s=900,
        unit_limit=None,
        trust_stall_s=600.0,
        on_submitted=lambda: None,
    )


def test_the_planner_resumes_our_checkpoint_first_and_claims_what_it_hands_out(
    parts, tmp_path
) -> None:
    planner = _planner(parts, tmp_path)
    first = planner.next_assignment()
    assert first is not None and first.unit == 0
    claims = parts.services.ledger.active_claims(NOW)
    assert [(c.unit, c.node, c.expires_at) for c in claims] == [(0, ALICE.node_pub, NOW + 900)]
    assert [t for t, _m in parts.services.ipfs.published] == [parts.services.topic("claims")]
    # A checkpoint under the older name: resumed first, and moved to the current name.
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / f"{PARAMS.name}-unit5.ckpt").write_bytes(b"")
    resumed = planner.next_assignment()
    assert resumed is not None and resumed.unit == 5
    assert planner.checkpoint_path(5).exists()
    # One claim per node: the newest replaces the older.
    assert [c.unit for c in parts.services.ledger.active_claims(NOW)] == [5]


def test_the_planner_leaves_units_others_claimed(parts, tmp_path) -> None:
    sync = Sync(parts.services, parts.store, HeadBook(), fetch_timeout_s=1.0)
    # The frontier unit is open until two accounts claim it; any other unit, one.
    for p, unit in ((BOB, 0), (CAROL, 0), (DAVE, 1)):
        parts.store.ingest(_bytes(delegation(p)), "peer")
        sync.on_claim(wire.Claim(unit, p.node_pub, p.acct, NOW + 300), "peer")
    assert _planner(parts, tmp_path).next_assignment().unit == 2


# ---- TrustDuty --------------------------------------------------------------------------


def test_a_beacon_account_lists_each_commit_once(parts, tmp_path) -> None:
    published = []
    policy = TrustPolicy(genesis=frozenset({ALICE.acct}), beacons=frozenset({ALICE.acct}))
    duty = TrustDuty(
        parts.services,
        parts.store,
        lambda signed: published.append(signed.record) or "",
        policy=policy,
        data_dir=tmp_path,
        roles={},
    )
    commits = [_commit(BOB, unit) for unit in range(3)]
    parts.store.load([stored_record(c.record) for c in commits])
    duty.tick()
    duty.tick()  # nothing new: no second round
    assert [(b.round, sorted(b.listed)) for b in published] == [(1, sorted(c.cid for c in commits))]
    later = _commit(BOB, 3)
    parts.store.load([stored_record(later.record)])
    duty.tick()
    assert [(b.round, b.listed) for b in published[1:]] == [(2, (later.cid,))]


def test_re_announcing_stops_when_its_time_is_up_and_the_rest_go_next_time(
    parts, tmp_path, monkeypatch
) -> None:
    """A busy library holds each publish: one call announces for `budget_s` at most,
    oldest first, and says that entries were left (the network loop must not sit in
    re-announcements while gossip waits)."""
    import time

    t = [float(NOW)]
    parts.services.clock = lambda: t[0]
    monkeypatch.setattr(wire, "MAX_BATCH_RECORDS", 1)  # one record to a message here
    publisher = Publisher(parts.services, parts.store, HeadBook(), evidence_dir=tmp_path / "e")
    for p in (ALICE, BOB, CAROL, DAVE):
        publisher.add_own(delegation(p).record)
    t[0] += 11.0  # all four due again (a 10 s interval)
    ipfs = parts.services.ipfs
    real_publish = ipfs.publish

    def slow_publish(topic, data):
        time.sleep(0.1)
        real_publish(topic, data)

    ipfs.publish = slow_publish
    before = len(ipfs.published)
    assert publisher.reannounce(10.0, budget_s=0.15) is True
    first = len(ipfs.published) - before
    assert 1 <= first < 4
    for _ in range(4):
        if not publisher.reannounce(10.0, budget_s=0.15):
            break
    # every entry went out once more, none twice, and nothing due was left
    assert len(ipfs.published) - before == 4
    assert publisher.reannounce(10.0, budget_s=10.0) is False
