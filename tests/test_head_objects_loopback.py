"""Real nodes (embedded kubo, loopback): the head objects a node published and the
peer head objects it read are removed from its block store once no longer needed,
and nothing that is needed goes: every record still arrives, and a node that joins
afterwards catches up from what is left."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from network import wire
from network.ipfs.cid import cid_from_digest
from network.nodeparts import blockgc
from network.rejection import Accepted
from tests.netutil import InProcessNode, free_port, wait_until

pytestmark = [pytest.mark.network, pytest.mark.slow]


def _delegations(n: int) -> list[bytes]:
    from nacl.signing import SigningKey

    from network import codec
    from network.identity import delegate

    created = int(time.time()) - 60
    return [
        codec.encode(delegate(SigningKey.generate(), bytes(SigningKey.generate().verify_key), created))
        for _ in range(n)
    ]


def _stored_blocks(node: InProcessNode) -> dict[str, Path]:
    """Every block in the node's flatfs store: CID (file name: base32 multihash) -> file."""
    blocks = {}
    for path in (Path(node.node.config.data_dir) / "ipfs" / "blocks").glob("*/*.data"):
        raw = base64.b32decode(path.stem + "=" * (-len(path.stem) % 8))
        if raw[:2] == b"\x12\x20":  # sha2-256 (kubo's own init blocks are too)
            blocks[cid_from_digest(raw[2:])] = path
    return blocks


def _stored_cids(node: InProcessNode) -> set[str]:
    return set(_stored_blocks(node))


def _head_objects_not_needed(node: InProcessNode) -> set[str]:
    """Blocks that are head indexes, pages or bundles and that the node need not keep."""
    left = set()
    for cid, path in _stored_blocks(node).items():
        if node.node._keeps_object(cid):
            continue
        try:
            # (read from the store itself: the collector may remove it meanwhile, and
            # an IPFS get would then go looking for it on the network)
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        decoders = (wire.decode_cid_list, wire.decode_head_index, wire.decode_bundle)
        if any(isinstance(decode(data), list) for decode in decoders):
            left.add(cid)
    return left


def test_old_head_objects_go_and_everything_still_arrives(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(blockgc, "GRACE_S", 1.0)
    alice = InProcessNode(tmp_path, "alice", [], port=free_port()).start()
    nodes = [alice]
    try:
        bobby = InProcessNode(tmp_path, "bobby", [alice.node.ipfs.addresses()[0]], port=free_port()).start()
        nodes.append(bobby)
        sent: list[str] = []
        for batch in range(5):  # five heads, each changing some pages
            verdicts = alice.node._store.ingest_many([(r, "test") for r in _delegations(40)])
            sent += [v.cid for v in verdicts if isinstance(v, Accepted)]
            assert len(sent) == 40 * (batch + 1)
            wait_until(lambda s=tuple(sent): all(bobby.node._store.holds(c) for c in s), 60,
                       f"bobby to hold batch {batch}")
        # Past the grace, at the next turns of both network loops.
        time.sleep(blockgc.GRACE_S + 0.5)
        wait_until(lambda: not _head_objects_not_needed(alice), 30, "alice's old heads removed")
        wait_until(lambda: not _head_objects_not_needed(bobby), 30, "bobby's read heads removed")
        # (five heads made ~4 x (40 pages + 40 bundles + 2 indexes) objects to remove)
        assert alice.node._block_gc.removed > 100
        assert bobby.node._block_gc.removed > 0
        # Every record still in both stores, and served: a node joining now catches up.
        assert set(sent) <= _stored_cids(alice) and set(sent) <= _stored_cids(bobby)
        carol = InProcessNode(tmp_path, "carol", [bobby.node.ipfs.addresses()[0]]).start()
        nodes.append(carol)
        wait_until(lambda: all(carol.node._store.holds(c) for c in sent), 90,
                   "carol to catch up from what is left")
    finally:
        for n in reversed(nodes):
            n.stop()
