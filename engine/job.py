"""Verifying a range block by block: resumable, cancellable, one batch per step.

`Verifier` is the one way the app, the headless node and the CLI run the
engine. It splits [start, end) into blocks aligned to the parameter set's block
size, skips blocks a checkpoint already holds, and runs the rest in batches of
blocks (`step()`: one per core on the CPU, several launches' worth on a GPU,
as the backend's batch_blocks() says), so a caller can pause, change the core count
or stop between batches. Progress comes out as plain frozen values.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.checkpoint import Checkpoint
from engine.evidence import BlockEvidence, UnitResult
from engine.params import PRODUCTION, Params

log = logging.getLogger(__name__)

BACKENDS = ("reference", "cpu", "gpu")


class BackendUnavailable(RuntimeError):
    """The asked-for backend cannot run here; the message says why."""


class Backend(Protocol):
    name: str

    def run_block(self, lo: int, hi: int) -> BlockEvidence: ...

    def run_blocks(self, ranges: list[tuple[int, int]], cores: int) -> list[BlockEvidence]: ...

    def batch_blocks(self, cores: int) -> int:
        """Blocks per run_blocks() call that keep this backend busy (CPU: one per core)."""
        ...

    def close(self) -> None: ...


def batch_blocks(backend: Backend, cores: int) -> int:
    """The backend's preferred batch, or one block per core for one that has none."""
    pick = getattr(backend, "batch_blocks", None)
    return max(1, int(pick(cores))) if pick is not None else max(1, cores)


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

    def batch_blocks(self, cores: int) -> int:
        return max(1, cores)

    def close(self) -> None:
        pass


def make_backend(
    name: str, params: Params, *, device: int = 0, devices: Sequence[int] | None = None
) -> Backend:
    """Build a backend by name. Raises BackendUnavailable with a readable reason.

    For "gpu", `devices` lists the CUDA devices to use (None: just `device`;
    empty: every usable one); other backends ignore both. Several devices give
    one SplitBackend that runs each batch on all of them at once, one worker
    thread per device.
    """
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
        wanted = [device] if devices is None else list(devices)
        if not wanted:
            wanted = [d.index for d in status.devices]
        backends, refused = [], []
        try:
            for index in dict.fromkeys(wanted):  # each device once, in the order given
                try:
                    # The first production run on a device calibrates it (seconds, cached).
                    tuning = gpu.ensure_tuned(index, params) if params == PRODUCTION else None
                    backends.append(gpu.GpuBackend(params, device=index, tuning=tuning))
                except gpu.GpuUnavailable as exc:
                    refused.append(exc.reason)
                    log.warning("GPU %d is not used: %s", index, exc.reason)
        except BaseException:
            for b in backends:
                b.close()
            raise
        if not backends:  # the other devices still compute when one is refused
            raise BackendUnavailable(f"no GPU: {refused[0]}")
        if len(backends) == 1:
            return backends[0]
        from engine.parallel import SplitBackend

        return SplitBackend(backends)
    raise BackendUnavailable(f"unknown backend {name!r} (choose {', '.join(BACKENDS)})")


def parse_devices(text: str) -> tuple[int, ...]:
    """A device list as users type it ("0,2", "1", "" for all) as indices.

    Raises ValueError with a readable message for anything else.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise ValueError(f"GPU devices must be indices such as 0 or 0,1 (got {text!r})")
    return tuple(dict.fromkeys(int(p) for p in parts))


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

    @classmethod
    def of_unit(cls, params: Params, unit: int, folder: Path) -> Assignment:
        """Unit `unit` of `params`, its checkpoint named by `unit_checkpoint_path`."""
        lo, hi = params.unit_range(unit)
        return cls(unit, lo, hi, unit_checkpoint_path(folder, params, unit))


def unit_checkpoint_path(folder: Path, params: Params, unit: int) -> Path:
    """The one name of unit `unit`'s checkpoint in `folder`.

    Solo and network runs share it: the unit's range is the same either way,
    so a unit interrupted in one mode resumes in the other.
    """
    if unit < 0:
        raise ValueError(f"unit numbers start at 0, got {unit}")
    return folder / f"{params.name}-unit-{unit}.ckpt"


def checkpoint_unit(path: Path, params: Params) -> int | None:
    """The unit whose checkpoint `path` is (under `params`), or None for any other file.

    Also reads the older network name `{params}-unit{N}.ckpt` (no dash), so a
    caller can move such a file to `unit_checkpoint_path`.
    """
    prefix, suffix = f"{params.name}-unit", ".ckpt"
    name = path.name
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    digits = name[len(prefix) : -len(suffix)].removeprefix("-")
    # Only a plain decimal numeral: "-3", "+3", " 3" or "03" are no unit's name.
    if not digits.isascii() or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        return None
    return int(digits)


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
        self._unsaved: list[BlockEvidence] = []
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

    @property
    def batch_size(self) -> int:
        """Blocks the next step() runs: what the backend asks for with `cores`."""
        return batch_blocks(self.backend, self.cores)

    def restored(self) -> list[BlockDone]:
        """The blocks a checkpoint supplied, as progress values (for displays)."""
        return [
            BlockDone(b, self.blocks_done, self.blocks_total, b.hi - b.lo, 0.0, "checkpoint")
            for b in self._restored
        ]

    def step(self) -> list[BlockDone]:
        """Run the next batch (up to batch_size blocks) and checkpoint it."""
        if not self._pending:
            return []
        size = self.batch_size
        batch, self._pending = self._pending[:size], self._pending[size:]
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
            self._done[ev.lo] = ev
            out.append(
                BlockDone(ev, self.blocks_done, self.blocks_total, ev.hi - ev.lo, elapsed, self.backend.name)
            )
        if self._checkpoint is not None:
            # Kept until written: a failed write (a full disk) raises to the
            # caller, and the next step writes these blocks again with its own.
            self._unsaved.extend(evidences)
            self._checkpoint.append_many(self._unsaved)
            self._unsaved = []
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
