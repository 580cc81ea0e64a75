"""Claims between real nodes on loopback (PROTOCOL §8, "Conflicting claims" and
"Choosing work"): a node that joins late learns a claim made before it was there
(its peer sends its live claim again when the peer set changes), and two nodes that
pick the same unit at the same moment end with exactly one computing it.

Two Node objects, each with its own embedded kubo, gossiping over 127.0.0.1. They
share a clock the test moves, so the settle time passes when the test says, once
both claims have crossed (nothing here asserts how long anything took).
"""

from __future__ import annotations

import pytest

from engine import Assignment
from engine.params import Params
from network import codec, wire
from network.nodeparts.planner import Hold
from tests.netutil import InProcessNode, make_profile, wait_until
from tests.test_claims_loopback import Clock, _claim_of

pytestmark = pytest.mark.network

PARAMS = Params.custom(name="claims-race", unit_bits=10, block_bits=4, sieve_k=4)
SETTLE = 60.0  # clock seconds: the test moves the clock past it


def _others_hold_unit_0(tmp_path, clock) -> list[bytes]:
    """Two other accounts (not running) and their claims on unit 0, as wire bytes:
    their account and delegation records, then each node's signed claim."""
    out: list[bytes] = []
    claims: list[bytes] = []
    for name in ("carol", "david"):
        profile = make_profile(tmp_path / name, name)
        out += [codec.encode(r) for r in profile.local_records()]
        key = profile.node_key()
        claim = wire.Claim(0, bytes(key.verify_key), profile.account_public_key(),
                           int(clock()) + 3000)  # fmt: skip
        claims.append(wire.sign_claim(claim, key))
    return out + claims


def test_a_late_node_learns_a_live_claim_and_racing_nodes_compute_a_unit_once(tmp_path):
    clock = Clock()
    config = {"params": PARAMS, "clock": clock, "unit_limit": 2, "claim_settle_s": SETTLE}
    a = InProcessNode(tmp_path, "alice", [], listen_s=0.0, **config).start()
    b = None
    try:
        # A claims unit 5 before B exists; claims go out only when made or renewed.
        a.node.claim(5)
        address = a.node.status().listen[0]
        b = InProcessNode(tmp_path, "bobby", [address], listen_s=0.0, **config).start()
        live = wait_until(lambda: _claim_of(b, a, 5), 60, "B to learn A's earlier claim")
        assert live.unit == 5

        # Carol and David (two other accounts, not running) hold the frontier unit 0,
        # which closes it; with unit_limit 2, unit 1 is the only unit left.
        records = _others_hold_unit_0(tmp_path, clock)
        for n in (a, b):
            for data in records[:-2]:
                n.node.ingest(data, "test")
            for data in records[-2:]:
                n.node._on_message("test", data)
        # Both have seen a peer (or a node alone would compute without settling).
        wait_until(
            lambda: a.node._planner._peers and b.node._planner._peers, 60, "peers noted"
        )
        # Both pick unit 1 at the same moment (A's claim moves from unit 5).
        first = [n.node.take_unit() for n in (a, b)]
        assert all(isinstance(h, Hold) and "unit 1" in h.reason for h in first), first
        wait_until(
            lambda: _claim_of(a, b, 1) and _claim_of(b, a, 1), 60, "both claims to cross"
        )
        clock.offset += SETTLE + 1
        got = {"a": a.node.take_unit(), "b": b.node.take_unit()}
        computing = [name for name, g in got.items() if isinstance(g, Assignment)]
        assert len(computing) == 1, got
        loser = "a" if computing == ["b"] else "b"
        assert got[loser] is None  # nothing else is open to it
        assert got[computing[0]].unit == 1
    finally:
        if b is not None:
            b.stop()
        a.stop()
