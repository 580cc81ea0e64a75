"""Several backends as one: each batch is split across them, one worker each.

This is how several GPUs work on one unit: `make_backend("gpu", devices=...)`
wraps one GpuBackend per device in a SplitBackend, and the Verifier, the app
and the headless node see a single backend. Each batch is cut into contiguous
runs of blocks, sized in proportion to what each backend asks for
(batch_blocks(), which a GPU backend sizes from its measured speed), and every
run goes to its backend's own worker thread, so the devices compute at the
same time. Evidence is per block, so joining the runs in order gives exactly
what a single backend would return.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from engine.evidence import BlockEvidence
from engine.job import Backend, batch_blocks


def split_runs(count: int, weights: Sequence[int]) -> list[tuple[int, int]]:
    """Cut range(count) into len(weights) contiguous [start, stop) runs by weight.

    Each run's length is proportional to its weight (rounded down, the
    remainder going to the first runs); every index lands in exactly one run.
    """
    if not weights or any(w < 1 for w in weights):
        raise ValueError("weights must be positive")
    total = sum(weights)
    sizes = [count * w // total for w in weights]
    for i in range(count - sum(sizes)):
        sizes[i % len(sizes)] += 1
    runs, start = [], 0
    for size in sizes:
        runs.append((start, start + size))
        start += size
    return runs


class SplitBackend:
    """Runs each batch on several backends at once (one worker thread per backend)."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        if not backends:
            raise ValueError("SplitBackend needs at least one backend")
        names = {b.name for b in backends}
        if len(names) != 1:
            raise ValueError(f"SplitBackend joins backends of one kind, not {sorted(names)}")
        self.backends = list(backends)
        self.name = self.backends[0].name
        # One worker thread per backend, always the same one: a device's
        # CUDA context and streams stay with one thread.
        self._workers = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hailstone-device-{i}")
            for i in range(len(self.backends))
        ]
        self._closed = False

    def warm_up(self) -> None:
        self._on_each(lambda b: b.warm_up() if hasattr(b, "warm_up") else None)

    def batch_blocks(self, cores: int) -> int:
        return sum(batch_blocks(b, cores) for b in self.backends)

    def run_block(self, lo: int, hi: int) -> BlockEvidence:
        """One block (a spot-check, say) runs on the first backend."""
        return self.backends[0].run_block(lo, hi)

    def run_blocks(self, ranges: Sequence[tuple[int, int]], cores: int) -> list[BlockEvidence]:
        """Evidence for `ranges`, in order, computed by all backends at once."""
        ranges = list(ranges)
        weights = [batch_blocks(b, cores) for b in self.backends]
        runs = split_runs(len(ranges), weights)
        futures = [
            worker.submit(b.run_blocks, ranges[start:stop], cores)
            for worker, b, (start, stop) in zip(self._workers, self.backends, runs, strict=True)
            if stop > start
        ]
        # Wait for every worker before raising, so no device is still busy
        # with this batch when the caller retries it or falls back.
        results, error = [], None
        for future in futures:
            try:
                results.extend(future.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                error = error or exc
        if error is not None:
            raise error
        return results

    def set_duty_cycle(self, fraction: float) -> None:
        for b in self.backends:
            if hasattr(b, "set_duty_cycle"):
                b.set_duty_cycle(fraction)

    def close(self) -> None:
        """Close every backend on its own worker, then end the workers (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._on_each(lambda b: b.close())
        finally:
            for worker in self._workers:
                worker.shutdown(wait=True)

    def _on_each(self, fn) -> None:
        futures = [w.submit(fn, b) for w, b in zip(self._workers, self.backends, strict=True)]
        for future in futures:
            future.result()
