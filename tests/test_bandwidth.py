"""The bandwidth limit over real embedded kubo on loopback: paced, nothing lost.

The arithmetic is tested without waiting in tests/test_ipfs_capped.py; here the
same wrapper runs over real nodes, and two real `main.py node` processes under a
limit agree on every unit.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from network.bandwidth import COVERAGE, describe, limit_bytes_s
from network.ipfs import IpfsUnavailable, open_node
from network.ipfs.capped import CappedIpfsNode

embedded = pytest.importorskip("network.ipfs.embedded")
try:
    embedded.load_library()
except IpfsUnavailable as exc:  # pragma: no cover - macOS and other platforms
    pytest.skip(f"embedded kubo unavailable: {exc}", allow_module_level=True)

pytestmark = pytest.mark.network

KIB = 1024
LIMIT_KIB = 8
DEADLINE_S = 60.0  # for the mesh and for every message to arrive (bounded loops)


def test_low_traffic_config_sets_and_undoes_kubo_options() -> None:
    # (an older Hailstone wrote Routing.Type, which the library never read: removed)
    cfg: dict = {"Swarm": {"ConnMgr": {}, "RelayService": {}}, "Routing": {"Type": "dhtclient"}}
    embedded.low_traffic_config(cfg, True)
    assert "Type" not in cfg["Routing"]
    assert cfg["Swarm"]["RelayService"]["Enabled"] is False
    assert cfg["AutoNAT"]["ServiceMode"] == "disabled"
    embedded.low_traffic_config(cfg, False)
    assert "Type" not in cfg["Routing"]
    assert "Enabled" not in cfg["Swarm"]["RelayService"]
    assert "ServiceMode" not in cfg["AutoNAT"]


@pytest.fixture()
def capped_pair(tmp_path: Path) -> Iterator[tuple[CappedIpfsNode, CappedIpfsNode]]:
    """A (low-traffic kubo, paced at LIMIT_KIB) and B (paced at LIMIT_KIB), connected."""
    nodes: list[CappedIpfsNode] = []
    try:
        for name in "ab":
            inner = open_node(
                "embedded", repo_dir=tmp_path / name, listen=["/ip4/127.0.0.1/tcp/0"],
                low_traffic=True,
            )
            nodes.append(CappedIpfsNode(inner, limit_bytes_s(LIMIT_KIB)))
        a, b = nodes
        b.connect(a.addresses()[0])
        yield a, b
    finally:
        for node in nodes:
            node.close()


def test_the_repo_runs_kubos_low_traffic_options(capped_pair, tmp_path: Path) -> None:
    cfg = json.loads((tmp_path / "a" / "config").read_text())
    assert cfg["AutoNAT"]["ServiceMode"] == "disabled"
    assert cfg["Swarm"]["RelayService"]["Enabled"] is False
    assert cfg["Swarm"]["ConnMgr"] == embedded.CONNMGR


def test_a_capped_node_delivers_every_record_paced(capped_pair) -> None:
    a, b = capped_pair
    topic = "hailstone-capped-" + os.urandom(4).hex()
    records = [i.to_bytes(2, "big") + os.urandom(2 * KIB - 2) for i in range(24)]  # 48 KiB
    with b.subscribe(topic) as sub:
        # gossipsub forms its mesh first: a small hello until B hears one.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert time.monotonic() < deadline, "the pubsub mesh never formed"
            a.publish(topic, b"hello")
            msg = sub.next_message(timeout=0.5)
            if msg is not None and msg.data == b"hello":
                break
        for r in records:  # 48 KiB at 8 KiB/s: most of them wait for the limit
            a.publish(topic, r)
        got: list[bytes] = []
        while len(got) < len(records):
            assert time.monotonic() < deadline + DEADLINE_S, f"only {len(got)} records arrived"
            msg = sub.next_message(timeout=1.0)
            if msg is not None and msg.data != b"hello":
                got.append(msg.data)
    assert sorted(got) == sorted(records)  # every record, none twice
    sent = a.traffic()
    assert sent.deferred >= len(records) - 4  # the burst holds about four of them
    assert sent.waited_s > 0
    assert sent.sent_bytes >= len(records) * 2 * KIB
    assert b.traffic().received_bytes >= len(records) * 2 * KIB
    assert "limit 8 KiB/s each way" in describe(sent)


def test_capped_fetches_all_arrive_within_their_deadlines(capped_pair) -> None:
    a, b = capped_pair
    objects = [os.urandom(4 * KIB) for _ in range(8)]  # 32 KiB at 8 KiB/s
    cids = [a.add(o) for o in objects]
    got = [b.get(cid, 30.0, 8 * KIB) for cid in cids]  # each within its own 30 s
    assert got == objects
    stats = b.traffic()
    assert stats.received_bytes == 32 * KIB
    assert stats.deferred >= 4 and stats.deferred_gets_timed_out == 0


@pytest.mark.slow
def test_two_capped_node_processes_agree_on_every_unit(tmp_path: Path) -> None:
    """`main.py node --bandwidth-limit` on both sides: records flow, nothing is lost."""
    from tests.netutil import NodeProcess, assert_nothing_lost, wait_until

    extra = ["--unit-limit", "2", "--claim-ttl", "20", "--bandwidth-limit", str(LIMIT_KIB)]
    a = NodeProcess(tmp_path, "alice", extra=extra).start()
    nodes = [a]
    try:
        wait_until(lambda: a.status().get("listen"), 30, "alice's address")
        nodes.append(NodeProcess(tmp_path, "bob", peers=[a.address], extra=extra).start())

        def settled() -> bool:
            s = [n.status() for n in nodes]
            return all(x.get("frontier") == 2 and x.get("outbox") == 0 for x in s) and (
                len({x.get("state_digest") for x in s}) == 1
            )

        wait_until(settled, 180, "two capped nodes to agree on units 0 and 1")
        cfg = json.loads((tmp_path / "alice" / "ipfs" / "config").read_text())
        assert cfg["AutoNAT"]["ServiceMode"] == "disabled"
        assert "bandwidth limit 8 KiB/s" in (tmp_path / "alice.log").read_text()
    finally:
        for n in nodes:
            n.stop()
    for n in nodes:
        assert_nothing_lost(n.data_dir)


def test_the_flag_is_checked_by_the_setting() -> None:
    from network.node_commands import node_options

    base = dict(
        params="dev", backend="cpu", cores=1, cpu_share=None, gpu_devices=None, ipfs=None,
        api=None, spot_check_share=None, peer=[], claim_ttl=900, head_interval=5.0,
        reannounce_interval=10.0, unit_limit=None, listen=None, no_bootstrap=True,
    )
    from engine.settings import ENGINE_SETTINGS
    from network.settings import NETWORK_SETTINGS

    settings = {s.key: s.default for s in ENGINE_SETTINGS + NETWORK_SETTINGS}
    opts = node_options(argparse.Namespace(**base, bandwidth_limit=16), settings, Path("/x"))
    assert opts.bandwidth_limit_kib == 16
    opts = node_options(argparse.Namespace(**base, bandwidth_limit=None),
                        {**settings, "bandwidth_limit_kib": 32}, Path("/x"))
    assert opts.bandwidth_limit_kib == 32
    with pytest.raises(ValueError, match="--bandwidth-limit"):
        node_options(argparse.Namespace(**base, bandwidth_limit=-1), settings, Path("/x"))
    assert "not paced" in COVERAGE
