"""Throughput benchmark at 2^71, in numbers per second counting every integer.

Warms up first (JIT compile or cache load, sieve load), then runs whole
production-size blocks from 2^71, in batches as the backend sizes them (a
block per core on the CPU; about BATCH_SECONDS of launches on a GPU), until
`seconds` have passed, and divides the integers covered by the wall time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from engine.job import batch_blocks, make_backend
from engine.params import PRODUCTION, Params


@dataclass(frozen=True, slots=True)
class BenchResult:
    """A timed run. `devices` names the GPUs used (empty on the CPU)."""

    backend: str
    cores: int
    start: int
    seconds: float
    numbers: int
    batch_blocks: int = 0
    devices: tuple[str, ...] = ()

    @property
    def numbers_per_second(self) -> float:
        return self.numbers / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        out = {
            "backend": self.backend,
            "cores": self.cores,
            "start": self.start,
            "seconds": self.seconds,
            "numbers_per_second": self.numbers_per_second,
            "batch_blocks": self.batch_blocks,
        }
        if self.devices:
            out["devices"] = list(self.devices)
        return out


def run_bench(
    backend: str = "cpu",
    cores: int = 1,
    seconds: float = 10.0,
    params: Params = PRODUCTION,
    *,
    devices: Sequence[int] | None = None,
) -> BenchResult:
    """Time whole blocks from params.start; batches as the backend sizes them.

    `devices`: the GPUs to use (None or empty: all), for backend "gpu".
    """
    b = make_backend(backend, params, devices=tuple(devices or ()))
    try:
        b.warm_up()
        size = params.block_size
        lo = params.start
        # Untimed batches until the batch size settles (a GPU sizes its batches
        # from its measured speed), so every thread and stream is warm.
        for _ in range(3):
            n = batch_blocks(b, cores)
            b.run_blocks([(lo + i * size, lo + (i + 1) * size) for i in range(n)], cores)
            lo += n * size
        numbers = 0
        t0 = time.perf_counter()
        while True:
            n = batch_blocks(b, cores)
            b.run_blocks([(lo + i * size, lo + (i + 1) * size) for i in range(n)], cores)
            lo += n * size
            numbers += n * size
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        return BenchResult(b.name, cores, params.start, elapsed, numbers, n, _device_names(b))
    finally:
        b.close()


def _device_names(backend) -> tuple[str, ...]:
    parts = getattr(backend, "backends", [backend])
    return tuple(
        f"{p.device.index}: {p.device.name}" for p in parts if getattr(p, "device", None)
    )
