"""Batches: how many blocks a step runs, several backends as one, failed checkpoint writes."""

from __future__ import annotations

import errno
import json
import os
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import checkpoint as checkpoint_module
from engine.cpu import CpuBackend
from engine.evidence import BlockEvidence
from engine.gpu import BATCH_LAUNCHES, BATCH_SECONDS, batch_size
from engine.job import (
    ReferenceBackend,
    Verifier,
    batch_blocks,
    make_backend,
    parse_devices,
    verify_range,
)
from engine.parallel import SplitBackend, split_runs
from engine.params import Params

P = Params.custom(unit_bits=20, block_bits=14, sieve_k=12)


class SizedCpu(CpuBackend):
    """A real CPU backend that asks for a fixed batch (as a GPU backend asks for launches)."""

    def __init__(self, params: Params, batch: int) -> None:
        super().__init__(params)
        self.batch = batch
        self.calls: list[int] = []
        self.threads: set[str] = set()

    def batch_blocks(self, cores: int) -> int:
        return self.batch

    def run_blocks(self, ranges, cores):
        self.calls.append(len(ranges))
        self.threads.add(threading.current_thread().name)
        return super().run_blocks(ranges, cores)


class FailingCpu(SizedCpu):
    """A real CPU backend whose device 'fails' mid-run, as a GPU can."""

    def run_blocks(self, ranges, cores):
        super().run_blocks(ranges, cores)
        raise RuntimeError("the device fell off the bus")


# -- batch sizes -------------------------------------------------------------------


def test_verifier_runs_the_batch_the_backend_asks_for() -> None:
    lo, hi = P.unit_range(3)
    backend = SizedCpu(P, batch=7)
    job = Verifier(P, lo, hi, backend, cores=2)
    assert job.batch_size == 7
    while not job.done:
        job.step()
    assert backend.calls == [7] * (P.blocks_per_unit // 7) + [P.blocks_per_unit % 7]
    assert job.result().root == verify_range(P, lo, hi, "cpu").root


def test_cpu_and_reference_batches_are_one_block_per_core() -> None:
    assert batch_blocks(CpuBackend(P), 3) == 3
    assert batch_blocks(ReferenceBackend(P), 2) == 2
    assert batch_blocks(object(), 4) == 4  # a backend without a preference


def test_gpu_batch_is_whole_launches_sized_by_measured_speed() -> None:
    per_launch, block = 76, 1 << 24
    fewest, most = BATCH_LAUNCHES
    assert batch_size(per_launch, block, 0.0) == fewest * per_launch  # not yet measured
    # 1e11 numbers/s fills BATCH_SECONDS with this many whole launches:
    launches = int(1e11 * BATCH_SECONDS // (per_launch * block))
    assert fewest < launches < most
    assert batch_size(per_launch, block, 1e11) == launches * per_launch
    assert batch_size(per_launch, block, 1e6) == fewest * per_launch  # slow: still overlaps
    assert batch_size(per_launch, block, 1e15) == most * per_launch  # capped


# -- several backends as one (several GPUs) -----------------------------------------


@given(count=st.integers(0, 500), weights=st.lists(st.integers(1, 1000), min_size=1, max_size=8))
def test_split_runs_cover_every_index_once_in_proportion(count, weights) -> None:
    runs = split_runs(count, weights)
    assert len(runs) == len(weights)
    assert runs[0][0] == 0 and runs[-1][1] == count
    assert all(a[1] == b[0] for a, b in zip(runs, runs[1:], strict=False))
    total = sum(weights)
    for (start, stop), w in zip(runs, weights, strict=True):
        assert abs((stop - start) - count * w / total) < 1 + 1e-9


def test_split_runs_rejects_bad_weights() -> None:
    with pytest.raises(ValueError):
        split_runs(4, [])
    with pytest.raises(ValueError):
        split_runs(4, [1, 0])


def test_split_backend_matches_one_backend_and_uses_every_worker() -> None:
    lo, hi = P.unit_range(5)
    parts = [SizedCpu(P, batch=6), SizedCpu(P, batch=2)]
    split = SplitBackend(parts)
    try:
        assert split.name == "cpu" and split.batch_blocks(1) == 8
        job = Verifier(P, lo, hi, split, cores=1)
        while not job.done:
            job.step()
        result = job.result()
    finally:
        split.close()
    assert result.root == verify_range(P, lo, hi, "reference").root
    # Every batch of 8 went 6 : 2, each part on its own worker thread.
    assert parts[0].calls[0] == 6 and parts[1].calls[0] == 2
    assert sum(parts[0].calls) + sum(parts[1].calls) == P.blocks_per_unit
    assert parts[0].threads == {"hailstone-device-0_0"}
    assert parts[1].threads == {"hailstone-device-1_0"}


def test_split_backend_failure_keeps_the_batch_pending() -> None:
    lo, hi = P.unit_range(6)
    split = SplitBackend([SizedCpu(P, batch=3), FailingCpu(P, batch=3)])
    try:
        job = Verifier(P, lo, hi, split, cores=1)
        with pytest.raises(RuntimeError, match="fell off the bus"):
            job.step()
        assert job.blocks_done == 0  # nothing of the failed batch counts
        # The caller falls back to another backend and loses nothing.
        job.backend = CpuBackend(P)
        while not job.done:
            job.step()
        assert job.result().root == verify_range(P, lo, hi, "cpu").root
    finally:
        split.close()


def test_split_backend_refuses_mixed_or_no_backends() -> None:
    with pytest.raises(ValueError):
        SplitBackend([])
    with pytest.raises(ValueError):
        SplitBackend([CpuBackend(P), ReferenceBackend(P)])


# -- devices ------------------------------------------------------------------------


def test_parse_devices() -> None:
    assert parse_devices("") == ()
    assert parse_devices("0") == (0,)
    assert parse_devices(" 2, 0 ,2") == (2, 0)
    for bad in ("gpu0", "-1", "1;2", "0.5"):
        with pytest.raises(ValueError, match="GPU devices"):
            parse_devices(bad)


def test_cpu_backend_ignores_device_lists() -> None:
    backend = make_backend("cpu", P, devices=(3, 4))
    assert isinstance(backend, CpuBackend)


# -- a checkpoint write that fails --------------------------------------------------


def test_failed_checkpoint_write_loses_nothing(tmp_path, monkeypatch) -> None:
    lo, hi = P.unit_range(7)
    ckpt = tmp_path / "unit.ckpt"
    job = Verifier(P, lo, hi, CpuBackend(P), cores=2, checkpoint=ckpt)
    job.step()
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        job.step()
    assert job.blocks_done == 4  # computed blocks stay with the job
    monkeypatch.setattr(checkpoint_module.os, "fsync", real_fsync)
    job.step()  # the disk has room again: writes the unsaved batch with this one
    job.close()
    resumed = Verifier(P, lo, hi, CpuBackend(P), cores=2, checkpoint=ckpt)
    assert resumed.blocks_done == 6
    while not resumed.done:
        resumed.step()
    assert resumed.result().root == verify_range(P, lo, hi, "cpu").root


def test_checkpoint_batch_is_one_fsync(tmp_path, monkeypatch) -> None:
    lo, hi = P.unit_range(8)
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(checkpoint_module.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    job = Verifier(P, lo, hi, SizedCpu(P, batch=16), checkpoint=tmp_path / "c.ckpt")
    job.step()
    job.step()
    job.close()
    assert len(calls) == 2
    lines = (tmp_path / "c.ckpt").read_text().splitlines()
    assert len(lines) == 1 + 32
    blocks = [BlockEvidence.from_json(json.loads(x)) for x in lines[1:]]
    assert [b.lo for b in blocks] == [r[0] for r in job._ranges[:32]]


def test_split_backend_closes_once() -> None:
    split = SplitBackend([CpuBackend(P), CpuBackend(P)])
    split.close()
    split.close()  # the app and the runner may both close on the way out


_u = st.integers(0, (1 << 130) - 1)


@given(
    fields=st.tuples(_u, _u, _u, _u, _u, _u, _u),
    candidates=st.lists(_u, max_size=4),
)
def test_checkpoint_line_is_the_json_form(fields, candidates) -> None:
    block = BlockEvidence(*fields, candidates=tuple(candidates))
    line = block.to_json_line()
    assert line == json.dumps(block.to_json(), separators=(",", ":"))
    assert BlockEvidence.from_json(json.loads(line)) == block
