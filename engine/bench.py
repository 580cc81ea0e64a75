"""Throughput benchmark at 2^71, in numbers per second counting every integer.

Warms up first (JIT compile or cache load, sieve load), then runs whole
production-size blocks from 2^71 on `cores` threads until `seconds` have
passed, and divides the integers covered by the wall time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.job import make_backend
from engine.params import PRODUCTION, Params


@dataclass(frozen=True, slots=True)
class BenchResult:
    backend: str
    cores: int
    start: int
    seconds: float
    numbers: int

    @property
    def numbers_per_second(self) -> float:
        return self.numbers / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return {
            "backend": self.backend,
            "cores": self.cores,
            "start": self.start,
            "seconds": self.seconds,
            "numbers_per_second": self.numbers_per_second,
        }


def run_bench(
    backend: str = "cpu", cores: int = 1, seconds: float = 10.0, params: Params = PRODUCTION
) -> BenchResult:
    b = make_backend(backend, params)
    try:
        b.warm_up()
        size = params.block_size
        lo = params.start
        # one untimed batch so every thread has touched the tables
        b.run_blocks([(lo + i * size, lo + (i + 1) * size) for i in range(cores)], cores)
        lo += cores * size
        numbers = 0
        t0 = time.perf_counter()
        while True:
            batch = [(lo + i * size, lo + (i + 1) * size) for i in range(cores)]
            b.run_blocks(batch, cores)
            lo += cores * size
            numbers += cores * size
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        return BenchResult(b.name, cores, params.start, elapsed, numbers)
    finally:
        b.close()
