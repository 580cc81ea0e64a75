"""Claims between real nodes on loopback (PROTOCOL §8, "Conflicting claims" and
"Choosing work"): a node that joins late learns a claim made before it was there
(its peer sends its live claim again when the peer set changes), and two nodes that
pick the same unit at the same moment end with exactly one computing it.

Two Node objects, each with its own embedded kubo, gossiping over 127.0.0.1. They
share a clock the test moves, so the settle time passes when the test says, once
both claims have crossed (nothing here asserts how long anything took).
"""

from __future__ import annotations

import time

import pytest

from engine import Assignment
from engine.job import verify_range
from engine.params import Params
from network import codec
from network.ipfs import cid_for_bytes
from network.nodeparts.planner import Hold
from network.records import WorkRecord
from tests.netutil import InProcessNode, make_profile, wait_until

pytestmark = pytest.mark.network

PARAMS = Params.custom(name="claims-race", unit_bits=10, block_bits=4, sieve_k=4)
SETTLE = 60.0  # clock seconds: the test moves the clock past it


class Clock:
    """Wall time plus an offset the test moves (both nodes read the same one)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _claim_of(node: InProcessNode, by: InProcessNode, unit: int):
    for c in node.node.ledger.active_claims(0.0):
        if c.unit == unit and c.node == by.node.node_pub:
            return c
    return None


def _carols_report(tmp_path, clock) -> list[bytes]:
    """A third account's records (account, delegation) and its report of unit 0, as
    wire bytes: computed for real, signed by its own keys."""
    carol = make_profile(tmp_path / "carol", "carol")
    node_key = carol.node_key()
    result = verify_range(PARAMS, *PARAMS.unit_range(0), backend="reference")
    rec = WorkRecord.from_unit_result(
        result, PARAMS, 0, bytes(node_key.verify_key), carol.account_public_key(),
        int(clock()), cid_for_bytes(b"".join(result.leaves)),
    )  # fmt: skip
    return [codec.encode(r) for r in carol.local_records()] + [
        codec.encode(codec.sign(rec, node_key))
    ]


def test_a_late_node_learns_a_live_claim_and_racing_nodes_compute_a_unit_once(tmp_path):
    clock = Clock()
    config = {"params": PARAMS, "clock": clock, "unit_limit": 1, "claim_settle_s": SETTLE}
    a = InProcessNode(tmp_path, "alice", [], listen_s=0.0, **config).start()
    b = None
    try:
        # A claims unit 5 before B exists; claims go out only when made or renewed.
        a.node.claim(5)
        address = a.node.status().listen[0]
        b = InProcessNode(tmp_path, "bobby", [address], listen_s=0.0, **config).start()
        live = wait_until(lambda: _claim_of(b, a, 5), 60, "B to learn A's earlier claim")
        assert live.unit == 5

        # Carol (a third account, not running) reported unit 0, so it needs one more
        # account; with unit_limit 1 it is the only unit. Both nodes hold her report.
        for data in _carols_report(tmp_path, clock):
            for n in (a, b):
                n.node.ingest(data, "test")
        for n in (a, b):
            assert n.node.state().status_of(0) == "reported_once"
        # Both have seen a peer (or a node alone would compute without settling).
        wait_until(
            lambda: a.node._planner._peers and b.node._planner._peers, 60, "peers noted"
        )
        # Both pick unit 0 at the same moment (A's claim moves from unit 5).
        first = [n.node.take_unit() for n in (a, b)]
        assert all(isinstance(h, Hold) and "unit 0" in h.reason for h in first), first
        wait_until(
            lambda: _claim_of(a, b, 0) and _claim_of(b, a, 0), 60, "both claims to cross"
        )
        clock.offset += SETTLE + 1
        got = {"a": a.node.take_unit(), "b": b.node.take_unit()}
        computing = [name for name, g in got.items() if isinstance(g, Assignment)]
        assert len(computing) == 1, got
        loser = "a" if computing == ["b"] else "b"
        assert got[loser] is None  # nothing else open to it
        # The winner reports; the unit is verified and the loser never computes it.
        winner = a if computing == ["a"] else b
        assignment = got[computing[0]]
        result = verify_range(PARAMS, *PARAMS.unit_range(0), backend="reference")
        winner.node.submit_unit(assignment, result)
        other = b if winner is a else a
        wait_until(
            lambda: other.node.state().status_of(0) == "verified", 60, "the unit verified"
        )
        assert other.node.take_unit() is None
        assert [u for u, _s, _c in other.node.my_units()] == []
    finally:
        if b is not None:
            b.stop()
        a.stop()
