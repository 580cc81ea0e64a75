"""Compute at background priority: the CPU backend's blocks run on its own threads,
lowered, at most `cores` at once, and give the reference's answer."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from engine import reference
from engine.cpu import CpuBackend
from engine.params import Params
from engine.priority import (
    NICE_LOWEST,
    PRIORITY_ENV,
    compute_priority,
    lower_this_thread,
    thread_nice,
)

P = Params.custom(unit_bits=20, block_bits=14, sieve_k=12)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")


def _ranges(n: int) -> list[tuple[int, int]]:
    lo = P.start
    return [(lo + i * P.block_size, lo + (i + 1) * P.block_size) for i in range(n)]


@linux_only
def test_lowering_a_thread_leaves_the_others_alone() -> None:
    before = thread_nice()
    seen: dict[str, object] = {}

    def lowered() -> None:
        seen["ok"] = lower_this_thread()
        seen["nice"] = thread_nice()

    t = threading.Thread(target=lowered)
    t.start()
    t.join()
    assert seen == {"ok": True, "nice": NICE_LOWEST}
    assert thread_nice() == before  # the caller's thread is untouched


@linux_only
def test_blocks_run_on_lowered_threads_and_the_caller_keeps_its_priority() -> None:
    backend = CpuBackend(P)
    niceness: list[int | None] = []
    names: list[str] = []
    compute = backend._compute

    def observed(lo: int, hi: int):
        niceness.append(thread_nice())
        names.append(threading.current_thread().name)
        return compute(lo, hi)

    backend._compute = observed  # type: ignore[method-assign]
    caller = thread_nice()
    try:
        backend.run_block(*_ranges(1)[0])
        backend.run_blocks(_ranges(3), cores=2)
    finally:
        backend.close()
    assert niceness == [NICE_LOWEST] * 4
    assert all(n.startswith("hailstone-cpu") for n in names)
    assert thread_nice() == caller
    assert os.getpriority(os.PRIO_PROCESS, 0) == caller  # (the process's own value too)


def test_results_match_the_reference_in_order_across_pool_sizes() -> None:
    backend = CpuBackend(P)
    ranges = _ranges(5)
    want = [reference.run_block(backend.sieve, lo, hi, P.exact_step_bound) for lo, hi in ranges]
    try:
        for cores in (3, 1, 8, 2):  # the pool grows to 3, then to 5; never shrinks
            assert backend.run_blocks(ranges, cores) == want
        assert backend.run_block(*ranges[4]) == want[4]
    finally:
        backend.close()


def test_no_more_blocks_at_once_than_cores_after_the_pool_grew() -> None:
    backend = CpuBackend(P)
    lock = threading.Lock()
    running = peak = 0
    compute = backend._compute

    def counted(lo: int, hi: int):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)  # (so blocks that may overlap do)
        try:
            return compute(lo, hi)
        finally:
            with lock:
                running -= 1

    backend._compute = counted  # type: ignore[method-assign]
    try:
        backend.run_blocks(_ranges(4), cores=4)
        assert peak == 4
        peak = 0
        backend.run_blocks(_ranges(6), cores=2)
        assert peak == 2
    finally:
        backend.close()


def test_a_bad_range_is_refused_before_anything_runs() -> None:
    backend = CpuBackend(P)
    try:
        with pytest.raises(ValueError, match="1 <= lo < hi"):
            backend.run_blocks([_ranges(1)[0], (10, 5)], cores=2)
        with pytest.raises(ValueError, match="shorter than"):
            backend.run_block(1, 1 + (1 << 62))
        assert backend._pool is None  # nothing was started for them
    finally:
        backend.close()


@linux_only
def test_normal_priority_keeps_the_compute_threads_where_the_program_is(monkeypatch) -> None:
    monkeypatch.setenv(PRIORITY_ENV, "normal")
    backend = CpuBackend(P)
    niceness: list[int | None] = []
    compute = backend._compute

    def observed(lo: int, hi: int):
        niceness.append(thread_nice())
        return compute(lo, hi)

    backend._compute = observed  # type: ignore[method-assign]
    try:
        backend.run_blocks(_ranges(2), cores=2)
    finally:
        backend.close()
    assert niceness == [thread_nice()] * 2 != [NICE_LOWEST] * 2


def test_the_priority_setting_is_read_and_a_bad_value_falls_back_to_background(
    monkeypatch, caplog
) -> None:
    monkeypatch.delenv(PRIORITY_ENV, raising=False)
    assert compute_priority() == "background"
    monkeypatch.setenv(PRIORITY_ENV, " Normal ")
    assert compute_priority() == "normal"
    monkeypatch.setenv(PRIORITY_ENV, "realtime")
    assert compute_priority() == "background"
    assert "realtime" in caplog.text
