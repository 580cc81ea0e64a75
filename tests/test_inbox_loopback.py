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
        # The honest record: the honest node's own account record.
        own = honest.node.ledger.records(kind="account")[0]
        for i in range(FLOOD):
            flooder.node.ipfs.publish(topic, b"junk %d" % i)
        deadline = time.monotonic() + 60
        while True:  # each publish of the honest record is one more message
            honest.node.ipfs.publish(topic, wire.encode_announcement(own.data, own.cid))
            if _queued_from(target.node, honest_id) > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        wait_until(
            lambda: _dropped_so_far(target.node, flooder_id) >= FLOOD - INBOX_MESSAGES,
            60,
            "the flood to be read into the inbox",
        )
        sub = target.node._subs["gossip"]
        with target.node.ipfs._poller.cond:
            assert len(sub._inbox) <= INBOX_MESSAGES  # (the flood's memory is bounded)
        assert _queued_from(target.node, honest_id) >= 1  # (the honest message was kept)
        assert not target.node._store.holds(own.cid)
        target.node.poll(2.0)
        assert target.node._store.holds(own.cid)
        # Every flood message was dropped (inbox_full, counted against the flooder) or
        # read and refused (junk: malformed); none went uncounted.
        counts = target.node.status().rejected_by_reason
        assert counts.get(R.INBOX_FULL, 0) >= FLOOD - INBOX_MESSAGES
        assert counts.get(R.INBOX_FULL, 0) + counts.get(R.MALFORMED, 0) >= FLOOD
        log = target.node.ledger.recent_rejections()
        assert {e.source for e in log if e.reason == R.INBOX_FULL} == {flooder_id}
    finally:
        for n in reversed(nodes):
            n.node.stop()
