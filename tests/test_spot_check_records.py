"""Spot-check records: one record per checked work naming every block that matched
(network.records.SpotCheckRecord), from the record's own checks through validation and
the state to the node part that draws the blocks and publishes the record.

Found by bench/swarm.py: one check record per block made check records 79 % of all
records at 32 nodes (about 5 per work with dev parameters; 82 with production ones).
"""

from __future__ import annotations

import dataclasses
import time

import cbor2
import pytest

from engine import merkle_root
from engine.cpu import CpuBackend
from network import codec
from network import rejection as R
from network.ipfs.memory import MemorySwarm
from network.ledger import LedgerError, stored_record
from network.nodeparts.checks import BlockChecks, draw_blocks
from network.records import MAX_SPOT_BLOCKS, SpotCheckRecord
from network.rejection import Accepted, Rejection
from network.validate import context, validate
from tests.test_nodeparts_jobs import Parts
from tests.test_state import (
    ALICE,
    BOB,
    CAROL,
    DELEGATIONS,
    OTHER_PARAMS,
    PARAMS,
    T0,
    Person,
    state_of,
    work,
)


def _spot(p: Person, target: Accepted, blocks: tuple[int, ...], created: int = T0 + 700):
    rec = SpotCheckRecord(
        work_cid=target.cid, blocks=blocks, node=p.node_pub, account=p.acct, created=created
    )
    signed = codec.sign(rec, p.node)
    return Accepted(record=signed, cid=codec.record_cid(signed))


# ---- the record ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocks", "why"),
    [
        ((), "1.."),
        ((3, 3), "strictly increasing"),
        ((4, 2), "strictly increasing"),
        ((-1,), "integer"),
        (tuple(range(MAX_SPOT_BLOCKS + 1)), "1.."),
        ([1, 2], "1.."),  # a list is not the record's tuple
    ],
)
def test_a_spot_check_record_refuses_a_bad_block_list(blocks, why) -> None:
    with pytest.raises(ValueError, match=why):
        SpotCheckRecord(
            work_cid="bafkreiwork", blocks=blocks, node=BOB.node_pub, account=BOB.acct, created=T0
        )


def test_the_largest_spot_check_record_fits_its_size_cap_and_round_trips() -> None:
    target = work(ALICE, 0)
    # the widest block numbers a production unit has (4096 blocks: two-byte integers)
    blocks = tuple(range(4096 - MAX_SPOT_BLOCKS, 4096))
    big = _spot(BOB, target, blocks)
    data = codec.encode(big.record)
    assert len(data) <= codec.SIZE_CAPS["spotcheck"]
    parsed = codec.parse(data)
    assert parsed == big.record and codec.record_cid(data) == big.cid


def test_a_spot_check_with_unsorted_blocks_on_the_wire_is_refused() -> None:
    good = _spot(BOB, work(ALICE, 0), (1, 2))
    body = codec.body_of(good.record.record)
    body["blocks"] = [2, 1]
    data = cbor2.dumps(
        ["spotcheck", 2, body, good.record.signer, good.record.signature], canonical=True
    )
    verdict = codec.parse(data)
    assert isinstance(verdict, Rejection) and verdict.reason_code == R.BAD_FIELD


# ---- validation and the state --------------------------------------------------------


def test_validation_judges_a_spot_check_against_its_work() -> None:
    target = work(ALICE, 0)
    delegations = [d.record.record for d in DELEGATIONS]
    works = {target.cid: target.record.record}
    ok = _spot(BOB, target, (0, 15))
    assert isinstance(validate(ok.record, context(T0 + 800, delegations, works=works)), Accepted)
    # unknown work: held until it arrives (the same reason a check gets)
    early = validate(ok.record, context(T0 + 800, delegations, works={}))
    assert isinstance(early, Rejection) and early.reason_code == R.UNKNOWN_WORK
    # PARAMS has 16 blocks per unit: block 16 does not exist
    past = validate(_spot(BOB, target, (3, 16)).record, context(T0 + 800, delegations, works=works))
    assert isinstance(past, Rejection) and past.reason_code == R.BAD_FIELD
    # signed by a node its account never delegated
    stranger = Person(CAROL.account, BOB.node)
    denied = validate(
        _spot(stranger, target, (1,)).record, context(T0 + 800, delegations, works=works)
    )
    assert isinstance(denied, Rejection) and denied.reason_code == R.NO_DELEGATION


def test_the_leaderboard_counts_each_block_a_spot_check_names() -> None:
    target = work(ALICE, 0)
    spot = _spot(BOB, target, (1, 4, 9))
    s = state_of(target, spot)
    board = {e.account: e for e in s.leaderboard}
    assert board[BOB.acct].checks == 3
    assert spot.cid not in s.ignored
    # a spot-check of work on other parameters (not counted) is ignored, not credited
    other = work(ALICE, 1, params=OTHER_PARAMS)
    stray = _spot(BOB, other, (1,))
    s2 = state_of(target, other, stray)
    assert stray.cid in s2.ignored
    assert BOB.acct not in {e.account for e in s2.leaderboard}


# ---- the node part: draw, check, publish -----------------------------------------------


def test_drawn_blocks_are_distinct_and_follow_the_seed() -> None:
    a = draw_blocks(b"seed-a", 16, 16)
    assert sorted(a) == list(range(16))
    assert draw_blocks(b"seed-a", 256, 5) == draw_blocks(b"seed-a", 256, 5)
    assert draw_blocks(b"seed-a", 256, 5) != draw_blocks(b"seed-b", 256, 5)
    assert len(set(draw_blocks(b"seed-c", 256, 128))) == 128
    with pytest.raises(ValueError):
        draw_blocks(b"seed", 4, 5)


class _Reporter:
    """Bob's real work on unit 0 of PARAMS: leaves from the CPU engine (one of them
    changed when `wrong_block` is given), its evidence object in Alice's IPFS."""

    def __init__(self, parts: Parts, wrong_block: int | None = None) -> None:
        self.backend = CpuBackend(PARAMS)
        lo, _ = PARAMS.unit_range(0)
        self.blocks = [
            self.backend.run_block(lo + b * PARAMS.block_size, lo + (b + 1) * PARAMS.block_size)
            for b in range(PARAMS.blocks_per_unit)
        ]
        leaves = [e.leaf() for e in self.blocks]
        if wrong_block is not None:
            leaves[wrong_block] = bytes(32)
        evidence_cid = parts.services.ipfs.add(b"".join(leaves))
        # (Bob's made-up totals, as the state tests use, with this root and evidence)
        rec = dataclasses.replace(
            work(BOB, 0).record.record, root=merkle_root(leaves), evidence_cid=evidence_cid
        )
        signed = codec.sign(rec, BOB.node)
        self.cid = codec.record_cid(signed)
        parts.store.load([stored_record(d.record) for d in DELEGATIONS] + [stored_record(signed)])


@pytest.fixture
def alice(tmp_path):
    p = Parts(tmp_path, MemorySwarm())
    published: list = []
    failing = [False]

    def add_own(signed) -> str:
        if failing[0]:
            raise LedgerError("disk full")
        published.append(signed.record)
        return codec.record_cid(signed)

    checks = BlockChecks(
        p.services,
        p.store,
        add_own,
        lambda: "bafyhead",
        trust=None,
        spot_check_share=5 / PARAMS.blocks_per_unit,
        fetch_timeout_s=5.0,
        evidence_retry_s=60.0,
    )
    checks.start(set())
    yield p, checks, published, failing
    checks.stop(5.0)
    p.close()


def _first_task(checks: BlockChecks, *, idle: bool = False):
    until = time.monotonic() + 20
    while time.monotonic() < until:
        task = checks.next_block_task(idle=idle)
        if task is not None:
            return task
        time.sleep(0.02)  # the evidence arrives on the fetcher's thread
    raise AssertionError("no spot-check task within 20 s")


def _run(reporter: _Reporter, task):
    return reporter.blocks[task.block]  # the engine's own evidence of that block


def test_a_budgeted_spot_check_publishes_one_record_for_all_its_blocks(alice) -> None:
    parts, checks, published, _failing = alice
    bob = _Reporter(parts)
    checks.earn()  # one unit reported: 5 blocks of budget
    first = _first_task(checks)
    assert checks.spot_budget == 0.0
    tasks = [first] + [checks.next_block_task() for _ in range(4)]
    assert checks.next_block_task() is None  # the budget is spent
    assert {t.work_cid for t in tasks} == {bob.cid} and len({t.block for t in tasks}) == 5
    assert all(t.purpose == "spot-check" for t in tasks)
    cids = [checks.submit_block(t, _run(bob, t)) for t in tasks]
    assert cids[:4] == ["", "", "", ""] and cids[4]
    (record,) = published
    assert isinstance(record, SpotCheckRecord)
    assert record.work_cid == bob.cid and record.blocks == tuple(sorted(t.block for t in tasks))


def test_a_block_that_does_not_match_is_disputed_and_left_out_of_the_record(alice) -> None:
    parts, checks, published, _failing = alice
    bob = _Reporter(parts, wrong_block=7)
    checks.spot_budget = float(PARAMS.blocks_per_unit)  # every block: 7 among them
    tasks = [_first_task(checks)] + [checks.next_block_task() for _ in range(15)]
    for t in tasks:
        checks.submit_block(t, _run(bob, t))
    kinds = [r.KIND for r in published]
    assert sorted(kinds) == ["dispute", "spotcheck"]
    dispute = next(r for r in published if r.KIND == "dispute")
    spot = next(r for r in published if r.KIND == "spotcheck")
    assert dispute.block == 7
    assert spot.blocks == tuple(b for b in range(16) if b != 7)


def test_a_spot_check_record_that_could_not_be_stored_is_stored_on_the_retry(alice) -> None:
    parts, checks, published, failing = alice
    bob = _Reporter(parts)
    checks.spot_budget = 2.0
    a = _first_task(checks)
    b = checks.next_block_task()
    assert checks.submit_block(a, _run(bob, a)) == ""
    failing[0] = True
    with pytest.raises(LedgerError):
        checks.submit_block(b, _run(bob, b))
    assert published == []
    failing[0] = False  # the session submits the same block again
    assert checks.submit_block(b, _run(bob, b))
    (record,) = published
    assert record.blocks == tuple(sorted((a.block, b.block)))


def test_an_abandoned_spot_check_publishes_what_matched_when_the_next_begins(alice) -> None:
    parts, checks, published, _failing = alice
    bob = _Reporter(parts)
    checks.spot_budget = 3.0
    a = _first_task(checks)
    checks.next_block_task()
    checks.next_block_task()  # handed out, never submitted (the loop dropped them)
    checks.submit_block(a, _run(bob, a))
    assert published == []
    # Budget for another spot-check (of Bob's work again: the only one there is).
    checks._checked.discard(bob.cid)
    checks.spot_budget = 1.0
    assert _first_task(checks).work_cid == bob.cid
    (record,) = published
    assert record.blocks == (a.block,)
