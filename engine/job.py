"""Verifying a range block by block: resumable, cancellable, one batch per step.

`Verifier` is the one way the app, the headless node and the CLI run the
engine. It splits [start, end) into blocks aligned to the parameter set's block
size, skips blocks a checkpoint already holds, and runs the rest in batches of
up to `cores` blocks (`step()`), so a caller can pause, change the core count
or stop between batches. Progress comes out as plain frozen values.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.checkpoint import Checkpoint
from engine.evidence import BlockEvidence, UnitResult
from engine.params import Params

BACKENDS = ("reference", "cpu", "gpu")


class BackendUnavailable(RuntimeError):
    """The asked-for backend cannot run here; the message says why."""


class Backend(Protocol):
    name: str

    def run_block(self, lo: int, hi: int) -> BlockEvidence: ...

    def run_blocks(self, ranges: list[tuple[int, int]], cores: int) -> list[BlockEvidence]: ...

    def close(self) -> None: ...


class ReferenceBackend:
    """The exact pure-Python path as a backend (slow; for checks and tiny ranges)."""

    name = "reference"

    def __init__(self, params: Params) -> None:
        from engine.sieve import load

        self.params = params
        self.sieve = load(params.sieve_k)

    def warm_up(self) -> None:
        pass

    def run_block(self, lo: int, hi: int) -> BlockEvidence:
        from engine.reference import run_block

        return run_block(self.sieve, lo, hi, self.params.exact_step_bound)

    def run_blocks(self, ranges: list[tuple[int, int]], cores: int) -> list[BlockEvidence]:
        return [self.run_block(lo, hi) for lo, hi in ranges]

    def close(self) -> None:
        pass


def make_backend(name: str, params: Params, *, device: int = 0) -> Backend:
    """Build a backend by name. Raises BackendUnavailable with a readable reason."""
    if name == "reference":
        return ReferenceBackend(params)
    if name == "cpu":
        from engine.cpu import CpuBackend

        return CpuBackend(params)
    if name == "gpu":
        try:
            from engine import gpu
        except ImportError as exc:  # the module itself is part of the engine
            raise BackendUnavailable(f"no GPU: {exc}") from exc
        status = gpu.probe()
        if not status.available:
            raise BackendUnavailable(f"no GPU: {status.reason}")
        return gpu.GpuBackend(params, device=device)
    raise BackendUnavailable(f"unknown backend {name!r} (choose {', '.join(BACKENDS)})")


def block_ranges(params: Params, start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) cut at multiples of the block size."""
    if not 1 <= start < end:
        raise ValueError("need 1 <= start < end")
    size = params.block_size
    out = []
    lo = start
    while lo < end:
        hi = min(end, (lo // size + 1) * size)
        out.append((lo, hi))
        lo = hi
    return out


@dataclass(frozen=True, slots=True)
class Assignment:
    """A work unit to compute: [lo, hi) of `unit`, resumable from `checkpoint`."""

    unit: int
    lo: int
    hi: int
    checkpoint: Path


@dataclass(frozen=True, slots=True)
class BlockDone:
    """One block finished (or found in the checkpoint).

    Attributes:
        evidence: the block's evidence.
        blocks_done, blocks_total: progress of the whole range.
        numbers: integers covered by the block.
        seconds: wall time of the batch it ran in (0 when restored).
        backend: which backend computed it ("checkpoint" when restored).
    """

    evidence: BlockEvidence
    blocks_done: int
    blocks_total: int
    numbers: int
    seconds: float
    backend: str


class Verifier:
    """Verifies [start, end) under `params`, a batch of blocks per `step()`."""

    def __init__(
        self,
        params: Params,
        start: int,
        end: int,
        backend: Backend,
        *,
        cores: int = 1,
        checkpoint: Path | None = None,
    ) -> None:
        self.params = params
        self.start = start
        self.end = end
        self.backend = backend
        self.cores = max(1, int(cores))
        self._ranges = block_ranges(params, start, end)
        self._checkpoint = Checkpoint(checkpoint, params, start, end) if checkpoint else None
        restored = self._checkpoint.load() if self._checkpoint else {}
        self._done: dict[int, BlockEvidence] = {}
        self._restored: list[BlockEvidence] = []
        for lo, hi in self._ranges:
            block = restored.get(lo)
            if block is not None and block.hi == hi:
                self._done[lo] = block
                self._restored.append(block)
        self._pending = [r for r in self._ranges if r[0] not in self._done]
        self._compute_seconds = 0.0

    @property
    def blocks_total(self) -> int:
        return len(self._ranges)

    @property
    def blocks_done(self) -> int:
        return len(self._done)

    @property
    def done(self) -> bool:
        return not self._pending

    def set_cores(self, cores: int) -> None:
        """Takes effect from the next batch."""
        self.cores = max(1, int(cores))

    def restored(self) -> list[BlockDone]:
        """The blocks a checkpoint supplied, as progress values (for displays)."""
        return [
            BlockDone(b, self.blocks_done, self.blocks_total, b.hi - b.lo, 0.0, "checkpoint")
            for b in self._restored
        ]

    def step(self) -> list[BlockDone]:
        """Run the next batch (up to `cores` blocks) and checkpoint it."""
        if not self._pending:
            return []
        batch, self._pending = self._pending[: self.cores], self._pending[self.cores :]
        t0 = time.perf_counter()
        try:
            evidences = self.backend.run_blocks(batch, self.cores)
        except BaseException:
            self._pending = batch + self._pending  # nothing of this batch counts
            raise
        elapsed = time.perf_counter() - t0
        self._compute_seconds += elapsed
        out = []
        for ev in evidences:
            if self._checkpoint is not None:
                self._checkpoint.append(ev)
            self._done[ev.lo] = ev
            out.append(
                BlockDone(ev, self.blocks_done, self.blocks_total, ev.hi - ev.lo, elapsed, self.backend.name)
            )
        return out

    def run(self, cancel: threading.Event | None = None) -> Iterator[BlockDone]:
        """Step until done or until `cancel` is set (checked between batches)."""
        while self._pending and not (cancel is not None and cancel.is_set()):
            yield from self.step()

    def result(self) -> UnitResult:
        """The finished range's result. Raises if blocks are still pending."""
        if self._pending:
            raise RuntimeError(f"{len(self._pending)} blocks still pending")
        if self._checkpoint is not None:
            self._checkpoint.close()
        return UnitResult(
            start=self.start,
            end=self.end,
            params_version=self.params.version,
            block_bits=self.params.block_bits,
            sieve_k=self.params.sieve_k,
            backend=self.backend.name,
            blocks=tuple(self._done[lo] for lo, _ in self._ranges),
            seconds=self._compute_seconds,
        )

    def discard_checkpoint(self) -> None:
        """Remove the checkpoint file (call once the result is stored durably)."""
        if self._checkpoint is not None:
            self._checkpoint.remove()

    def close(self) -> None:
        if self._checkpoint is not None:
            self._checkpoint.close()


def verify_range(
    params: Params,
    start: int,
    end: int,
    backend: str = "cpu",
    *,
    cores: int = 1,
    checkpoint: Path | None = None,
    cancel: threading.Event | None = None,
) -> UnitResult:
    """Convenience: verify [start, end) to the end (or raise if cancelled)."""
    b = make_backend(backend, params)
    try:
        job = Verifier(params, start, end, b, cores=cores, checkpoint=checkpoint)
        for _ in job.run(cancel):
            pass
        return job.result()
    finally:
        b.close()
