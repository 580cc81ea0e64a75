"""The compute loop's counters behind the metrics: sums, smoothed rate, staleness."""

from __future__ import annotations

import pytest

from network.runstats import MAX_ERROR_CHARS, RATE_SMOOTHING, RATE_STALE_S, RunStats


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_counters_rate_and_staleness() -> None:
    clock = Clock()
    stats = RunStats(clock=clock)
    assert stats.snapshot().rate == {} and stats.snapshot().checkpoint_at == 0.0
    stats.batch("cpu", 1000, 1.0)
    stats.batch("cpu", 3000, 1.0)
    s = stats.snapshot()
    assert s.numbers == {"cpu": 4000} and s.seconds == {"cpu": 2.0}
    assert s.rate["cpu"] == pytest.approx(1000 + RATE_SMOOTHING * (3000 - 1000))
    stats.batch("gpu", 10**9, 0.25)
    assert stats.snapshot().rate["gpu"] == 4e9
    # a paused backend shows 0, not its last rate; when it runs again it starts afresh
    clock.t += RATE_STALE_S + 1
    assert stats.snapshot().rate == {"cpu": 0.0, "gpu": 0.0}
    stats.batch("cpu", 500, 1.0)
    assert stats.snapshot().rate == {"cpu": 500.0, "gpu": 0.0}
    # a zero-length batch counts its numbers but cannot give a rate
    stats.batch("cpu", 7, 0.0)
    assert stats.snapshot().numbers["cpu"] == 4507 and stats.snapshot().rate["cpu"] == 500.0


def test_units_checks_checkpoints_and_errors() -> None:
    clock = Clock()
    stats = RunStats(clock=clock)
    stats.unit_finished()
    stats.block_checked()
    stats.block_checked()
    stats.checkpoint_written()
    stats.error("x" * 1000)
    clock.t += 5
    stats.error("disk full")
    s = stats.snapshot()
    assert (s.units_finished, s.blocks_checked, s.errors) == (1, 2, 2)
    assert s.checkpoint_at == 1000.0 and s.last_error_at == 1005.0
    assert s.last_error == "disk full"
    stats.error("y" * 1000)
    assert len(stats.snapshot().last_error) == MAX_ERROR_CHARS
