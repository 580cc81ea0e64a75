"""GPU backend on a real device: identical evidence to the CPU and the reference.

Skipped at import when probe() finds no usable GPU (the reason is shown).
Without a GPU, tests/test_gpu_kernel_host.py still tests the kernel's
arithmetic through a host build of the same source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import gpu, reference
from engine.cpu import CpuBackend
from engine.evidence import UnitResult
from engine.job import Verifier, make_backend, verify_range
from engine.parallel import SplitBackend
from engine.params import DEV, PRODUCTION, Params

MAIN = Path(__file__).resolve().parent.parent / "main.py"

_STATUS = gpu.probe()
if not _STATUS.available:
    pytest.skip(f"no GPU: {_STATUS.reason}", allow_module_level=True)

pytestmark = pytest.mark.gpu


def _split(lo: int, hi: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, hi)) for a in range(lo, hi, size)]


def _vs_reference(params: Params, ranges, tuning: gpu.Tuning | None = None):
    backend = gpu.GpuBackend(params, tuning=tuning)
    try:
        got = backend.run_blocks(ranges)
    finally:
        backend.close()
    want = [
        reference.run_block(backend.sieve, lo, hi, params.exact_step_bound) for lo, hi in ranges
    ]
    assert got == want
    return got


def _unit(params: Params, backend_name: str, blocks) -> UnitResult:
    return UnitResult(
        start=blocks[0].lo,
        end=blocks[-1].hi,
        params_version=params.version,
        block_bits=params.block_bits,
        sieve_k=params.sieve_k,
        backend=backend_name,
        blocks=tuple(blocks),
    )


def test_devices_are_listed():
    devices = gpu.available_devices()
    assert devices and all(d.memory_bytes > 0 and d.name for d in devices)


@pytest.mark.parametrize("k", [8, 16, 20])
def test_small_n_from_one(k):
    _vs_reference(Params.custom(sieve_k=k), _split(1, 1 << 16, 1 << 12))


@pytest.mark.parametrize("k", [8, 16, 20])
def test_across_2_to_64(k):
    edge = 1 << 64
    _vs_reference(Params.custom(sieve_k=k), _split(edge - (1 << 16), edge + (1 << 16), 1 << 14))


@pytest.mark.parametrize("k", [8, 16, 20])
def test_at_2_to_71(k):
    start = 1 << 71
    _vs_reference(Params.custom(sieve_k=k), _split(start, start + (1 << 20), 1 << 16))


@pytest.mark.parametrize("k", [8, 16])
def test_mersenne_numbers(k):
    ranges = [(max(1, (1 << m) - 256), (1 << m) + 256) for m in range(2, 101)]
    got = _vs_reference(Params.custom(sieve_k=k), ranges)
    assert sum(b.overflows for b in got) > 0


@pytest.mark.parametrize("k", [8, 16, 20])
def test_small_step_bounds(k):
    params = Params.custom(sieve_k=k, step_bound=5, exact_step_bound=10)
    start = 1 << 71
    got = _vs_reference(params, _split(start, start + (1 << 16), 1 << 13))
    assert sum(len(b.candidates) for b in got) > 0


def test_geometry_does_not_change_results():
    params = Params.custom(sieve_k=16)
    ranges = _split(1 << 71, (1 << 71) + (1 << 20), 1 << 16)
    a = _vs_reference(params, ranges, gpu.Tuning(64, 1 << 10))
    b = _vs_reference(params, ranges, gpu.Tuning(512, 1 << 24))
    assert a == b


def test_dev_unit_root_matches_cpu():
    lo, hi = DEV.unit_range(0)
    ranges = _split(lo, hi, DEV.block_size)
    backend = gpu.GpuBackend(DEV)
    try:
        got = backend.run_blocks(ranges)
    finally:
        backend.close()
    cpu = CpuBackend(DEV)
    want = cpu.run_blocks(ranges, 2)
    cpu.close()
    assert _unit(DEV, "gpu", got).root == _unit(DEV, "cpu", want).root


def test_production_blocks_match_cpu():
    lo = PRODUCTION.start
    ranges = _split(lo, lo + 2 * PRODUCTION.block_size, PRODUCTION.block_size)
    backend = gpu.GpuBackend(PRODUCTION)
    try:
        backend.warm_up()
        got = backend.run_blocks(ranges)
    finally:
        backend.close()
    want = CpuBackend(PRODUCTION).run_blocks(ranges, 1)
    assert got == want
    assert _unit(PRODUCTION, "gpu", got).root == _unit(PRODUCTION, "cpu", want).root


def test_autotune_writes_the_cache(tmp_path):
    path = tmp_path / gpu.TUNING_FILE
    params = Params.custom(sieve_k=16)
    cands = (gpu.Tuning(64, 1 << 12), gpu.Tuning(256, 1 << 16))
    best = gpu.autotune(0, params, seconds=1.0, candidates=cands, cache_path=path)
    assert best in cands
    dev = gpu.available_devices()[0]
    assert gpu.load_tuning(dev.name, _STATUS.driver_version, path) == best


def test_throttled_backend_gives_the_same_evidence():
    params = Params.custom(sieve_k=16)
    ranges = _split(1 << 71, (1 << 71) + (1 << 18), 1 << 16)
    backend = gpu.GpuBackend(params)
    try:
        full = backend.run_blocks(ranges)
        backend.set_duty_cycle(0.5)
        assert backend.duty.share == 0.5
        half = backend.run_blocks(ranges)
        with pytest.raises(ValueError):
            backend.set_duty_cycle(0.0)
    finally:
        backend.close()
    assert full == half


def test_bad_device_index_is_a_clear_error():
    with pytest.raises(gpu.GpuUnavailable, match="no GPU number"):
        gpu.GpuBackend(Params.custom(), device=len(_STATUS.devices) + 7)


def test_full_production_unit_through_the_verifier_matches_cpu():
    """A whole production unit (4096 blocks) as the app and node run it: batches sized
    by the GPU's measured speed, one checkpoint write per batch."""
    lo, hi = PRODUCTION.unit_range(0)
    backend = gpu.GpuBackend(PRODUCTION)
    try:
        job = Verifier(PRODUCTION, lo, hi, backend)
        first = job.batch_size
        while not job.done:
            job.step()
        got = job.result()
        assert backend.numbers_per_second > 0
        assert first % backend.launch_blocks == 0
    finally:
        backend.close()
    want = verify_range(PRODUCTION, lo, hi, "cpu", cores=os.cpu_count() or 1)
    assert got.blocks == want.blocks and got.root == want.root


def test_split_over_devices_matches_cpu():
    """Several devices as one backend (each device twice on a one-GPU machine)."""
    indices = [d.index for d in _STATUS.devices] * (2 if len(_STATUS.devices) == 1 else 1)
    params = Params.custom(sieve_k=16)
    ranges = _split(1 << 71, (1 << 71) + (1 << 20), 1 << 14)
    split = SplitBackend([gpu.GpuBackend(params, device=i) for i in indices])
    try:
        got = split.run_blocks(ranges, 1)
    finally:
        split.close()
    cpu = CpuBackend(params)
    assert got == cpu.run_blocks(ranges, 2)
    cpu.close()


def test_make_backend_with_every_device():
    backend = make_backend("gpu", DEV, devices=())
    try:
        assert backend.name == "gpu"
        lo = DEV.start
        assert backend.run_block(lo, lo + 4096) == CpuBackend(DEV).run_block(lo, lo + 4096)
    finally:
        backend.close()


def test_cli_verify_on_the_gpu_matches_the_cpu():
    args = [sys.executable, str(MAIN), "verify", "2**71", "--count", "2**26", "--json"]
    runs = [
        subprocess.run([*args, "--backend", b], capture_output=True, text=True, timeout=600)
        for b in ("gpu", "cpu")
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
    g, c = (json.loads(r.stdout) for r in runs)
    assert g["backend"] == "gpu" and c["backend"] == "cpu"
    assert g["root"] == c["root"] and g["tested"] == c["tested"]


def test_first_production_use_calibrates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    dev = gpu.available_devices()[0]
    tuning = gpu.ensure_tuned(dev.index, PRODUCTION, seconds=2.0)
    assert gpu.load_tuning(dev.name, _STATUS.driver_version) == tuning
    assert gpu.ensure_tuned(dev.index, PRODUCTION) == tuning  # cached: no second calibration
