"""The swarm harness's delivery figure for live nodes: which arrivals it leaves out.

A killed or stopped node cannot receive, and a record whose author died before
relaying it cannot arrive anywhere in time; issue #12's "delivered within 5 s" is
about the network, so `delivery_to_live_nodes_s` leaves exactly those out.
"""

from __future__ import annotations

from types import SimpleNamespace

from bench.swarm import LIVE_WINDOW_S, _delays, _was_down


def _member(*down: tuple[float, float | None]) -> SimpleNamespace:
    return SimpleNamespace(down=[list(d) for d in down])


def test_a_node_counts_as_down_only_where_its_intervals_touch_the_window() -> None:
    node = _member((100.0, 110.0))
    assert _was_down(node, 105.0, 106.0)
    assert _was_down(node, 90.0, 100.0)  # went down at the window's last moment
    assert _was_down(node, 110.0, 120.0)  # came up at its first
    assert not _was_down(node, 111.0, 200.0)
    assert not _was_down(node, 0.0, 99.9)
    assert not _was_down(_member(), 0.0, 1e12)


def test_a_node_still_down_counts_as_down_from_then_on() -> None:
    node = _member((10.0, 20.0), (50.0, None))
    assert _was_down(node, 60.0, 70.0)
    assert _was_down(node, 49.0, 50.0)
    assert not _was_down(node, 21.0, 49.9)


def test_delays_summarise_count_share_and_tail() -> None:
    out = _delays([1.0, 2.0, LIVE_WINDOW_S, 9.0])
    assert out["count"] == 4
    assert out["share_within_5s"] == 0.75  # exactly 5 s is within
    assert out["max"] == 9.0 and out["median"] == 3.5
    assert _delays([])["count"] == 0
