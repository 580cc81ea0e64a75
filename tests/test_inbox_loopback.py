"""A flooded subscription inbox on real embedded-kubo nodes over loopback
(network/ipfs/inbox.py): the flooder's backlog is dropped and counted against it,
and an honest peer's record is taken at once."""

from __future__ import annotations

import time

import pytest

from engine import DEV
from network import rejection as R
from network import wire
from tests.netutil import InProcessNode, wait_until

pytestmark = [pytest.mark.network]
embedded = pytest.importorskip("network.ipfs.embedded")

INBOX_MESSAGES = 16
FLOOD = 300


def _queued_from(node, sender: str) -> int:
    sub = node._subs["gossip"]
    with node.ipfs._poller.cond:
        return len(sub._inbox._queues.get(sender, ()))


def _dropped_so_far(node, sender: str) -> int:
    sub = node._subs["gossip"]
    with node.ipfs._poller.cond:
        return sub._inbox._dropped.get(sender, 0)


def test_a_flood_overflows_only_the_flooders_share_of_the_inbox(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(embedded, "MAX_QUEUED_MESSAGES", INBOX_MESSAGES)
    # The target's loop is not polled until the flood is in its inbox: the node
    # falls behind as a node does under a flood it cannot take.
    target = InProcessNode(tmp_path, "target", [])
    target.node.start()
    nodes = [target]
    try:
        addr = next(a for a in target.node.ipfs.addresses() if "/127.0.0.1/" in a)
        flooder = InProcessNode(tmp_path, "flooder", [addr])
        honest = InProcessNode(tmp_path, "honest", [addr])
        for n in (flooder, honest):
            n.node.start()
            nodes.append(n)
        topic = wire.topics(DEV.name)["records"]
        flooder_id, honest_id = flooder.node.ipfs.peer_id(), honest.node.ipfs.peer_id()

        def probe_heard() -> bool:  # (gossip reaches the target once the mesh formed)
            flooder.node.ipfs.publish(topic, b"probe")
            return _queued_from(target.node, flooder_id) > 0

        wait_until(probe_heard, 60, "the flooder's gossip to reach the target")
        # The flood, until the inbox has dropped the flooder's excess. Gossipsub itself
        # drops a burst past its queue to a peer, so how many messages arrive is not
        # fixed: the flooder goes on, in bursts, until enough did.
        sent, deadline = 0, time.monotonic() + 60
        while _dropped_so_far(target.node, flooder_id) < FLOOD - INBOX_MESSAGES:
            assert time.monotonic() < deadline and sent < 20 * FLOOD, (
                f"the flood was not read into the inbox: {sent} sent, "
                f"{_dropped_so_far(target.node, flooder_id)} dropped"
            )
            for _ in range(20):
                flooder.node.ipfs.publish(topic, b"junk %d" % sent)
                sent += 1
            time.sleep(0.05)
        # The honest record (the honest node's own account record) arrives at an inbox
        # full of the flooder's messages, and is kept.
        own = honest.node.ledger.records(kind="account")[0]
        deadline = time.monotonic() + 60
        while True:  # each publish of the honest record is one more message
            honest.node.ipfs.publish(topic, wire.encode_announcement(own.data, own.cid))
            if _queued_from(target.node, honest_id) > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        sub = target.node._subs["gossip"]
        with target.node.ipfs._poller.cond:
            assert len(sub._inbox) <= INBOX_MESSAGES  # (the flood's memory is bounded)
        assert _queued_from(target.node, honest_id) >= 1  # (the honest message was kept)
        dropped = _dropped_so_far(target.node, flooder_id)
        queued = _queued_from(target.node, flooder_id)
        assert not target.node._store.holds(own.cid)
        target.node.poll(2.0)
        assert target.node._store.holds(own.cid)
        # Every flood message that arrived was dropped (inbox_full, counted against the
        # flooder) or read and refused (junk: malformed); none went uncounted.
        counts = target.node.status().rejected_by_reason
        assert counts.get(R.INBOX_FULL, 0) >= dropped >= FLOOD - INBOX_MESSAGES
        assert counts.get(R.INBOX_FULL, 0) + counts.get(R.MALFORMED, 0) >= dropped + queued
        log = target.node.ledger.recent_rejections()
        assert {e.source for e in log if e.reason == R.INBOX_FULL} == {flooder_id}
    finally:
        for n in reversed(nodes):
            n.node.stop()
