"""A starting node's wait for the network (Node.is_synced): past the sync timeout it
keeps waiting while fetched records still arrive, never beyond SYNC_MAX_FACTOR
timeouts, and at once when nothing comes.

Found by bench/swarm.py: in a 24-node swarm on two cores a late node's catch-up took
longer than the 20 s timeout, so it computed units the network had verified (156
reports beyond the two each unit needs).
"""

from __future__ import annotations

import time

from engine import DEV
from network import wire
from network.ipfs.memory import MemorySwarm
from network.node import SYNC_MAX_FACTOR, SYNC_QUIET_S, Node, NodeConfig
from tests.netutil import make_profile

TIMEOUT_S = 20.0


def _node(tmp_path) -> Node:
    profile = make_profile(tmp_path / "myself", "myself")
    return Node(
        NodeConfig(data_dir=tmp_path / "myself", params=DEV, listen=(), bootstrap=(),
                   peers=("/ip4/127.0.0.1/tcp/1/p2p/QmPeer",), sync_timeout_s=TIMEOUT_S),
        profile, profile.node_key(), ipfs=MemorySwarm().node("myself"),
    )


def test_past_the_timeout_a_node_waits_only_while_records_keep_coming(tmp_path) -> None:
    node = _node(tmp_path)  # not started: its fetchers never take the queued job
    try:
        now = time.monotonic()
        node._started_at = now - 5
        assert not node.is_synced()  # within the timeout, nothing held yet
        # a peer's head is queued (a fetch pending) and a record came 1 s ago
        node._sync.on_head(wire.Head(bytes(32), "bafkreiaaaa", 100), "peer")  # (far ahead)
        assert not node._sync.idle()
        node._started_at = now - TIMEOUT_S - 1
        node._sync.last_progress = now - 1
        assert not node.is_synced()  # past the timeout, but still catching up
        node._sync.last_progress = now - SYNC_QUIET_S - 1
        assert node.is_synced()  # nothing came for a while: stop waiting
        node._sync.last_progress = time.monotonic()
        node._started_at = time.monotonic() - SYNC_MAX_FACTOR * TIMEOUT_S - 1
        assert node.is_synced()  # never beyond the cap
    finally:
        node.stop()


def test_past_the_timeout_with_nothing_to_fetch_a_node_stops_waiting(tmp_path) -> None:
    node = _node(tmp_path)
    try:
        node._started_at = time.monotonic() - TIMEOUT_S - 1
        node._sync.last_progress = time.monotonic()  # recent, but no fetch pending
        assert node._sync.idle()
        assert node.is_synced()
    finally:
        node.stop()
