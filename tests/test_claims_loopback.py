"""Claims between real nodes on loopback (PROTOCOL §8, "Claims"): a squatter that keeps
renewing its claim without progress loses the unit within one TTL, and an honest node
takes it. Two Node objects, each with its own embedded kubo, gossiping over 127.0.0.1;
the nodes share a clock the test moves forward, so nothing waits for real expiry."""

from __future__ import annotations

import time

import pytest

from engine import Assignment
from engine.job import Verifier, make_backend, verify_range
from engine.params import Params
from network import rejection as R
from network import wire
from tests.netutil import InProcessNode, wait_until

pytestmark = pytest.mark.network

PARAMS = Params.custom(name="claims-loop", unit_bits=10, block_bits=4, sieve_k=4)
# Long enough that gossip delays never matter: the test moves the clock instead.
TTL = 600


class Clock:
    """Wall time plus an offset the test moves (both nodes read the same one)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _claim_of(node: InProcessNode, by: InProcessNode, unit: int):
    """`by`'s claim on `unit` as `node`'s ledger holds it (expired or not), or None."""
    for c in node.node.ledger.active_claims(0.0):
        if c.unit == unit and c.node == by.node.node_pub:
            return c
    return None


def test_a_squatters_stalled_claim_lapses_and_an_honest_node_takes_the_unit(tmp_path):
    clock = Clock()
    honest = InProcessNode(tmp_path, "honest", [], params=PARAMS, clock=clock).start()
    squatter = None
    try:
        address = honest.node.status().listen[0]
        squatter = InProcessNode(
            tmp_path, "squatter", [address], params=PARAMS, clock=clock, claim_ttl_s=TTL
        ).start()
        # The honest node reported unit 0 (the frontier), so its next unit is 1.
        folder = tmp_path / "honest" / "checkpoints"
        result = verify_range(PARAMS, *PARAMS.unit_range(0), backend="reference")
        honest.node.submit_unit(Assignment.of_unit(PARAMS, 0, folder), result)

        # The squatter claims unit 1 (from its real claim path: done = 0, no checkpoint)
        # until the honest node holds the claim (its delegation has to arrive first).
        def claimed():
            squatter.node.claim(1)
            return _claim_of(honest, squatter, 1)

        first = wait_until(claimed, 60, "the squatter's claim to reach the honest node")
        assert first.done == 0
        # The first claim the honest node stored set the expiry (the ones sent while
        # it waited for the delegation were renewals without progress).
        expiry = first.expires_at
        assert expiry > clock() + TTL / 2
        # The unit is closed: the honest node is handed unit 2.
        assert honest.node.next_assignment().unit == 2

        # A third of a TTL before that expiry the squatter renews, showing no progress.
        clock.offset += expiry - TTL / 3 - clock()
        renewed_at = clock()

        def renewal_seen():
            squatter.node.claim(1)
            c = _claim_of(honest, squatter, 1)
            return c if c is not None and c.received_at >= int(renewed_at) else None

        renewal = wait_until(renewal_seen, 60, "the renewal to reach the honest node")
        # It asked for renewed_at + TTL; the honest node kept the old expiry.
        assert renewal.expires_at == expiry and renewal.done == 0
        assert honest.node.next_assignment().unit != 1

        # Past the old expiry (still before the one the renewal asked for), the unit
        # is the honest node's.
        clock.offset += expiry - clock() + 1
        assert clock() < renewed_at + TTL
        assert honest.node.next_assignment().unit == 1

        # Progress is what extends a claim: once the squatter computes and checkpoints
        # blocks of unit 1, its renewal shows them (done, read from the checkpoint) and
        # the honest node extends the claim to the renewal's expiry.
        job = Verifier(
            PARAMS, *PARAMS.unit_range(1), make_backend("reference", PARAMS),
            checkpoint=squatter.node.checkpoint_path(1),
        )  # fmt: skip
        job.step()
        job.close()
        progress_at = clock()

        def progress_seen():
            squatter.node.claim(1)
            c = _claim_of(honest, squatter, 1)
            return c if c is not None and c.done > 0 else None

        shown = wait_until(progress_seen, 60, "the renewal with progress")
        assert shown.done == job.blocks_done
        assert shown.expires_at >= int(progress_at) + TTL
        assert honest.node.next_assignment().unit != 1

        # A claim showing more blocks than a unit has is refused and counted.
        bad = wire.Claim(1, squatter.node.node_pub, squatter.node.account_pub, int(clock()) + TTL,
                         done=PARAMS.blocks_per_unit + 1)  # fmt: skip
        before = honest.node.ledger.rejection_counts().get(R.MALFORMED, 0)
        honest.node._on_message("peer-x", wire.sign_claim(bad, squatter.node.node_key))
        assert honest.node.ledger.rejection_counts().get(R.MALFORMED, 0) == before + 1
        assert _claim_of(honest, squatter, 1).done == job.blocks_done

        # First-claim times are forgotten once their unit is verified: the squatter
        # claims unit 0 and reports the same root as the honest node (two accounts).
        sq_account = squatter.node.account_pub
        wait_until(
            lambda: squatter.node.claim(0) or honest.node.ledger.claim_first_seen(sq_account, 0),
            60, "the squatter's claim on unit 0",
        )  # fmt: skip
        folder = tmp_path / "squatter" / "checkpoints"
        squatter.node.submit_unit(Assignment.of_unit(PARAMS, 0, folder), result)
        wait_until(lambda: honest.node.state().status_of(0) == "verified", 60, "unit 0 verified")
        honest.node._housekeeping()
        assert honest.node.ledger.claim_first_seen(sq_account, 0) is None
        assert honest.node.ledger.claim_first_seen(sq_account, 1) is not None
    finally:
        if squatter is not None:
            squatter.stop()
        honest.stop()
