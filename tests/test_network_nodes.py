"""Real node processes on loopback, dev params: the network's promises end to end.

One small network is built for the module and taken through the scenarios in
order: agreement, a late joiner, forged traffic, an abandoned claim, a node
that was cut off, and a node that reports wrong roots.
"""

from __future__ import annotations

import dataclasses

import pytest

from engine import DEV, UnitResult
from engine.cpu import CpuBackend
from engine.job import Verifier
from network import codec, wire
from network.ledger import Ledger
from network.node import Assignment
from tests.netutil import InProcessNode, NodeProcess, digest, wait_until

pytestmark = [pytest.mark.network, pytest.mark.slow]

LIMIT = 4  # units 0..3 are handed out first


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    base = tmp_path_factory.mktemp("net")
    a = NodeProcess(base, "alice", extra=["--unit-limit", str(LIMIT), "--claim-ttl", "20"]).start()
    wait_until(lambda: a.status().get("listen"), 30, "alice's address")
    others = [
        NodeProcess(base, name, peers=[a.address], extra=["--unit-limit", str(LIMIT), "--claim-ttl", "20"]).start()
        for name in ("bob", "carol")
    ]
    nodes = {"alice": a, "bob": others[0], "carol": others[1], "_base": base}
    yield nodes
    for n in nodes.values():
        if isinstance(n, NodeProcess):
            n.stop()


def core(net) -> list[NodeProcess]:
    return [net["alice"], net["bob"], net["carol"]]


def settled(nodes: list[NodeProcess], frontier: int) -> bool:
    statuses = [n.status() for n in nodes]
    return (
        all(s.get("frontier") == frontier and s.get("outbox") == 0 for s in statuses)
        and len({s.get("state_digest") for s in statuses}) == 1
    )


def test_three_nodes_reach_the_same_frontier_and_leaderboard(net) -> None:
    nodes = core(net)
    wait_until(lambda: settled(nodes, LIMIT), 120, "three nodes to agree on the frontier")
    statuses = [n.status() for n in nodes]
    boards = {tuple(map(tuple, s["leaderboard"])) for s in statuses}
    assert len(boards) == 1
    (board,) = boards
    # Each verified unit credits exactly two accounts.
    assert sum(units for _, units in board) == 2 * LIMIT
    assert all(s["peers"] >= 1 and s["rejected"] == 0 for s in statuses)
    # Outboxes drained (settled) and heads' acknowledgements did some of it, unread.
    assert sum(s["gets"].get("ack_by_head", 0) for s in statuses) > 0


def test_late_joiner_catches_up_from_heads(net) -> None:
    late = NodeProcess(net["_base"], "dave", peers=[net["alice"].address],
                       extra=["--unit-limit", str(LIMIT)]).start()
    net["dave"] = late
    wait_until(lambda: late.status().get("frontier") == LIMIT, 90, "the late joiner to catch up")
    # dave's own account record is news to the others for a moment
    wait_until(lambda: len(digest([late, *core(net)])) == 1, 60, "the late joiner to agree")
    assert late.status()["units_done"] == 0  # it learned everything, computed nothing


def test_forged_tampered_replayed_and_garbage_records_change_nothing(net) -> None:
    nodes = core(net)
    h = InProcessNode(net["_base"], "mallory", [net["alice"].address]).start()
    try:
        wait_until(lambda: h.node.is_synced() and h.node.state().frontier == LIMIT, 60,
                   "mallory to sync")
        # mallory's own (valid) account record joins everyone's state first
        wait_until(lambda: all(n.status()["records"] == h.node.status().records for n in nodes)
                   and len(digest(nodes)) == 1, 60, "mallory's account to reach every node")
        before = {n.name: n.status() for n in nodes}
        topic = wire.topics(DEV.name)["records"]
        work = h.node.ledger.records(kind="work")[0]
        signed = codec.parse(work.data)
        # tampered: one byte of a real record flipped
        tampered = bytearray(work.data)
        tampered[len(tampered) // 2] ^= 0x01
        # forged: alice's work record re-signed by mallory's node key
        forged_sig = h.node.node_key.sign(codec.signed_bytes(signed.record)).signature
        forged = codec.encode(dataclasses.replace(signed, signature=forged_sig))
        payloads = [
            wire.encode_announcement(bytes(tampered), "x"),
            wire.encode_announcement(forged, "x"),
            wire.encode_announcement(b"\xa1garbage", "x"),
            b"not even cbor",
            wire.encode_announcement(work.data, work.cid),  # a replay: a no-op
        ]

        def rejected_everywhere() -> bool:
            for p in payloads:
                h.node.ipfs.publish(topic, p)
            return all(n.status()["rejected"] >= before[n.name]["rejected"] + 4 for n in nodes)

        wait_until(rejected_everywhere, 60, "every node to reject the forgeries")
    finally:
        h.stop()
    for n in nodes:
        s = n.status()
        assert s["state_digest"] == before[n.name]["state_digest"]
        assert s["records"] == before[n.name]["records"]  # the replay added nothing
        assert s["frontier"] == LIMIT


def test_a_vanished_claim_on_the_frontier_unit_blocks_nobody(net) -> None:
    # Erin claims the frontier unit for an hour and vanishes. The frontier unit is
    # always open to more than one worker (PROTOCOL §11, "Claims"), so bob and carol
    # finish it without waiting for the claim to expire. (Expiry of claims beyond the
    # frontier is pinned by tests/test_state.py.)
    nodes = core(net)
    claimer = InProcessNode(net["_base"], "erin", [net["alice"].address], claim_ttl_s=3600).start()
    try:
        wait_until(lambda: claimer.node.state().frontier == LIMIT, 60, "erin to sync")
        claimer.node.claim(LIMIT)
        wait_until(
            lambda: all(_has_claim(n, LIMIT) for n in nodes[1:]),
            30,
            "the claim to reach bob and carol",
        )
    finally:
        claimer.stop()  # erin vanishes holding the claim
    for n in nodes[1:]:
        n.stop()
        n.extra = ["--unit-limit", str(LIMIT + 1), "--claim-ttl", "20"]
        n.start()
    wait_until(lambda: settled(nodes[1:], LIMIT + 1), 120, "bob and carol to finish the unit")
    for n in nodes[1:]:
        assert _has_claim(n, LIMIT)  # still unexpired: it did not hold them up


def _has_claim(n: NodeProcess, unit: int) -> bool:
    # The status file does not list claims; read the ledger (WAL allows a reader).
    with Ledger.in_dir(n.data_dir) as ledger:
        return any(c.unit == unit for c in ledger.active_claims())


def _account(n: NodeProcess) -> bytes:
    from network.identity import Profile

    return Profile(n.data_dir).account_public_key()


def test_cut_off_node_publishes_its_outbox_when_it_reconnects(net) -> None:
    frank = NodeProcess(net["_base"], "frank", extra=["--unit-limit", "2"]).start()
    wait_until(lambda: frank.status().get("units_done") == 2, 60, "frank to compute alone")
    assert frank.status()["outbox"] > 0 and frank.status()["peers"] == 0
    frank.stop()
    frank.peers = [net["alice"].address]
    frank.start()
    wait_until(lambda: frank.status().get("outbox") == 0, 60, "frank's outbox to drain")
    alice = net["alice"]
    wait_until(lambda: digest([frank, alice]) == digest([alice]), 60, "frank and alice to agree")
    frank.stop()


def test_wrong_root_is_caught_by_a_spot_check_and_disputed(net) -> None:
    nodes = [net["alice"], net["bob"], net["carol"]]
    rogue = InProcessNode(net["_base"], "rogue", [net["alice"].address]).start()
    try:
        wait_until(lambda: rogue.node.state().frontier >= LIMIT, 60, "the rogue to sync")
        unit = LIMIT + 3  # beyond every honest node's limit: only the rogue reports it
        lo, hi = DEV.unit_range(unit)
        job = Verifier(DEV, lo, hi, CpuBackend(DEV), cores=2)
        for _ in job.run():
            pass
        honest = job.result()
        # every block's odd-step count off by one: a wrong root the spot-check must catch
        blocks = tuple(dataclasses.replace(b, odd_steps=b.odd_steps + 1) for b in honest.blocks)
        wrong = UnitResult(
            start=lo, end=hi, params_version=DEV.version, block_bits=DEV.block_bits,
            sieve_k=DEV.sieve_k, backend="cpu", blocks=blocks, seconds=honest.seconds,
        )
        assert wrong.root != honest.root
        bad_cid = rogue.node.submit_unit(Assignment(unit, lo, hi, rogue.node.checkpoint_path(unit)), wrong)

        def disputed_everywhere() -> bool:
            for n in nodes:
                with Ledger.in_dir(n.data_dir) as ledger:
                    disputes = [codec.parse(r.data).record for r in ledger.records(kind="dispute")]
                    checks = [codec.parse(r.data).record for r in ledger.records(kind="check")]
                if not any(d.work_cid == bad_cid for d in disputes):
                    return False
                if not any(c.work_cid == bad_cid and not c.match for c in checks):
                    return False
            return len(digest(nodes)) == 1

        wait_until(disputed_everywhere, 120, "the wrong root to be disputed and confirmed")
        wait_until(lambda: rogue.node.state().units.get(unit) is not None
                   and bad_cid in rogue.node.state().units[unit].removed, 60,
                   "the rogue's own node to see its record removed")
    finally:
        rogue.stop()
    wait_until(lambda: len(digest(nodes)) == 1, 30, "the honest nodes to agree after the dispute")
