"""A peer's older head still queued is skipped once a newer one is announced
(network/nodeparts/sync.py `_newest_head`), over the in-memory IpfsNode.

Found by bench/swarm.py: at 16 nodes each peer's head every 5 s queued ~600 stale
head fetches per node, so our outbox's acknowledgements (read from peers' heads)
lagged and the outbox was re-announced again and again.
"""

from __future__ import annotations

from engine import DEV
from network import wire
from network.ipfs.memory import MemorySwarm
from network.node import Node, NodeConfig
from tests.netutil import make_profile, wait_until


def test_a_stale_queued_head_is_not_fetched(tmp_path) -> None:
    swarm = MemorySwarm()
    profile = make_profile(tmp_path / "myself", "myself")
    node = Node(
        NodeConfig(data_dir=tmp_path / "myself", params=DEV, listen=(), bootstrap=(),
                   fetch_timeout_s=30.0),
        profile, profile.node_key(), ipfs=swarm.node("myself"),
    )
    peer = swarm.node("peer")
    stale = peer.add(b"an older head")
    newest = peer.add(b"the newest head")
    key = bytes(32)
    # both announced before any fetcher runs: both queued, in order
    node._sync.on_head(wire.Head(key, stale, 2), "peer")
    node._sync.on_head(wire.Head(key, newest, 3), "peer")
    assert node._sync.fetches.counters().backlog == 2
    node.start()
    peer.connect(node.ipfs.addresses()[0])
    me = node.ipfs.peer_id()
    try:
        wait_until(lambda: (me, newest) in swarm.gets, 30, "the newest head's fetch")
        wait_until(lambda: node.status().fetch.backlog == 0, 30, "the queue to drain")
        assert (me, stale) not in swarm.gets
    finally:
        node.stop()
