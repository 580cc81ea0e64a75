"""DeliveryLag: how long peers' fresh records took to arrive sets the claim settle time."""

from __future__ import annotations

import pytest

from network.nodeparts.deliverylag import (
    MIN_SAMPLES,
    SETTLE_MAX_S,
    WINDOW_S,
    DeliveryLag,
)
from tests.test_fetchqueue import Clock  # a monotonic clock the test moves (`t`)


def test_no_measure_until_enough_fresh_records_came():
    clock = Clock()
    lag = DeliveryLag(clock)
    for _ in range(MIN_SAMPLES - 1):
        lag.note("work", 6.0)
    assert lag.quantile() is None and lag.settle_s(2.0) == 2.0
    lag.note("check", 6.0)
    assert lag.quantile() == 6.0 and lag.settle_s(2.0) == 6.0


def test_identity_records_say_nothing_of_the_delay():
    # An account or delegation record is sent again all its life: its `created` is old.
    lag = DeliveryLag(Clock())
    for _ in range(50):
        lag.note("account", 3600.0)
        lag.note("delegation", 3600.0)
    assert lag.quantile() is None


def test_the_settle_covers_most_deliveries_within_its_bounds():
    clock = Clock()
    lag = DeliveryLag(clock)
    for i in range(100):  # 0.0 .. 9.9 s
        lag.note("work", i / 10)
    assert lag.quantile(0.9) == pytest.approx(9.0)
    assert lag.settle_s(2.0) == pytest.approx(9.0)
    # Fast gossip never shortens the base settle; turned off (0) stays off.
    fast = DeliveryLag(clock)
    for _ in range(20):
        fast.note("work", 0.1)
    assert fast.settle_s(2.0) == 2.0 and fast.settle_s(0.0) == 0.0
    # A peer sending records made an hour ago stretches it to the cap, no further;
    # a clock ahead of ours (negative delay) counts as no delay.
    slow = DeliveryLag(clock)
    for _ in range(20):
        slow.note("work", 3600.0)
        slow.note("work", -50.0)
    assert slow.settle_s(2.0) == SETTLE_MAX_S


def test_old_deliveries_are_forgotten():
    clock = Clock()
    lag = DeliveryLag(clock)
    for _ in range(20):
        lag.note("work", 8.0)
    assert lag.settle_s(2.0) == 8.0
    clock.t += WINDOW_S + 1
    assert lag.quantile() is None and lag.settle_s(2.0) == 2.0


def test_a_node_measures_gossiped_records_not_fetched_ones(tmp_path):
    # A real node (SQLite ledger, signatures, in-memory IPFS) whose clock runs 7 s
    # past the records' `created`: gossiped ones set its settle time, fetched ones
    # (a head read may bring old records) do not.
    from network import codec
    from network.ipfs.memory import MemorySwarm
    from network.node import Node, NodeConfig
    from network.nodeparts.sync import FETCHED
    from tests.netutil import make_profile
    from tests.test_claims_conflict import NOW, real_work
    from tests.test_state import CAROL, DAVE, PARAMS, delegation

    profile = make_profile(tmp_path / "me", "measurer")
    node = Node(
        NodeConfig(data_dir=tmp_path / "me", params=PARAMS, listen=(), bootstrap=()),
        profile, profile.node_key(), ipfs=MemorySwarm().node("me"), clock=lambda: NOW - 50 + 7.0,
    )
    node.start()
    try:
        for p in (CAROL, DAVE):
            node.ingest(codec.encode(delegation(p).record), "peer")
        base = node.config.claim_settle_s
        works = [real_work(p, u) for u in range(MIN_SAMPLES // 2) for p in (CAROL, DAVE)]
        for w in works[:-1]:
            node.ingest(codec.encode(w.record), FETCHED)
        assert node.status().claim_settle_s == base  # fetched: no measure
        for w in works[:-1]:
            node.ingest(codec.encode(w.record), "peer")  # held already: not new, no sample
        assert node.delivery_lag.quantile() is None
        more = [real_work(p, u) for u in range(MIN_SAMPLES // 2, MIN_SAMPLES) for p in (CAROL, DAVE)]
        for w in more:
            node.ingest(codec.encode(w.record), "peer")
        assert node.delivery_lag.quantile() == pytest.approx(7.0)
        assert node.status().claim_settle_s == pytest.approx(7.0)
    finally:
        node.stop()
