"""One contributor's compute loop: claim → compute → checkpoint → publish → renew → check.

`ContributorSession` is the loop's body, Qt-free and shared by both front ends:
`network/runner.py` (the headless node, `main.py node`) and `app/workers.py`
(the desktop app's engine worker) only call `turn()` again and again and turn
the events it yields into log lines and counters, or into Qt signals. So the
two behave the same by construction: the same work order (`WorkSource`), the
same claim renewal, the same waits after a failed store, the same GPU fallback.

One `turn()` runs at most one batch: a batch of the current unit's blocks, or
one block of someone else's record. Commands (`pause`, `set_share`, `set_gpu`,
...) may come from any thread; they are recorded under a lock and take effect
at the next turn, between two batches. Everything else belongs to the thread
that calls `turn()`.

Failures, and what the session does about them:
- a checkpoint or a result that cannot be stored (a full disk): `StoreFailed`,
  state "error", and the same step again after `store_retry_s`; the computed
  blocks or the finished result stay with the session, nothing is lost;
- the GPU failing mid-run: `GpuFailed`, and the unit goes on on the CPU (its
  checkpoint keeps every finished batch) until the GPU setting changes;
- anything else: `Failed`, state "error" until `resume()`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine import Assignment, BackendUnavailable, BlockEvidence, DutyCycle, Params, Verifier
from engine import make_backend as _make_backend
from engine.job import Backend
from engine.sieve import ready as sieve_ready
from network.contributor.events import (
    BatchDone,
    BatchStarted,
    BlockTaskDone,
    BlockTaskStarted,
    Event,
    Failed,
    GpuFailed,
    NextTurn,
    NoGpu,
    Progress,
    StateChanged,
    StoreFailed,
    UnitDone,
    UnitStarted,
    block_task_label,
)
from network.contributor.work import Wait, WorkSource
from network.ledger import LedgerError

log = logging.getLogger("hailstone.contributor")

# After a result or checkpoint could not be stored (a full disk), wait this long
# before trying the same step again.
STORE_RETRY_S = 30.0
# What a store can raise: the file system's errors and the ledger's.
STORE_ERRORS = (OSError, LedgerError)


@dataclass(frozen=True, slots=True)
class _Commands:
    """The commands in effect, copied under the lock at the start of a turn."""

    cores: int
    share: float
    gpu_enabled: bool
    gpu_devices: tuple[int, ...]
    gpu_generation: int
    paused: bool
    blocked: str
    failed: bool
    stopped: bool


@dataclass(slots=True)
class _UnsentBlock:
    """A recomputed block whose report could not be stored yet."""

    task: Any
    evidence: BlockEvidence
    busy_s: float
    backend: str


class ContributorSession:
    """The compute loop of one contributor, one batch per `turn()`.

    Args:
        params: the parameter set to compute.
        work: where work comes from and results go (`NodeWork`, the app's bridge).
        cores: CPU threads per batch.
        share: the busy share of wall time in (0, 1] (a duty cycle).
        gpu_enabled, gpu_devices: compute on these GPUs (empty: every GPU).
        backend_factory: `engine.make_backend` or a stand-in with its signature.
        clock: monotonic seconds (claim renewal; tests pass their own).
        store_retry_s: the wait after a failed store.
    """

    def __init__(
        self,
        params: Params,
        work: WorkSource,
        *,
        cores: int = 1,
        share: float = 1.0,
        gpu_enabled: bool = False,
        gpu_devices: tuple[int, ...] = (),
        backend_factory: Callable[..., Backend] = _make_backend,
        clock: Callable[[], float] = time.monotonic,
        store_retry_s: float = STORE_RETRY_S,
    ) -> None:
        self.params = params
        self.work = work
        self._make = backend_factory
        self._clock = clock
        self.store_retry_s = store_retry_s
        # Commands: written by any thread under the lock, read at a turn's start.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._commands = _Commands(
            cores=max(1, int(cores)),
            share=_valid_share(share),
            gpu_enabled=bool(gpu_enabled),
            gpu_devices=tuple(gpu_devices),
            gpu_generation=0,
            paused=False,
            blocked="",
            failed=False,
            stopped=False,
        )
        # The compute thread's own fields.
        self._duty = DutyCycle(self._commands.share)
        self._backend: Backend | None = None
        self._backend_is_gpu = False
        self._backend_devices: tuple[int, ...] = ()
        self._gpu_generation = 0
        self._gpu_refused = False  # once the GPU failed, the CPU until the setting changes
        self._job: Verifier | None = None
        self._assignment: Assignment | None = None
        self._last_claim = 0.0
        self._unit_busy_s = 0.0
        self._unit_blocks_run = 0
        self._unsent_block: _UnsentBlock | None = None
        self._state = ("", "")
        self.units_done = 0
        self.blocks_checked = 0

    # -- commands (any thread) -----------------------------------------------------

    def _command(self, **changes: Any) -> None:
        with self._lock:
            self._commands = dataclasses.replace(self._commands, **changes)
        self._wake.set()

    def pause(self) -> None:
        """Stop computing after the current batch (the unit stays open)."""
        self._command(paused=True)

    def resume(self) -> None:
        """Compute again; also clears a failure."""
        self._command(paused=False, failed=False)

    def set_blocked(self, reason: str) -> None:
        """A policy reason not to compute now (on battery, a snooze); "" lets it run."""
        self._command(blocked=str(reason))

    def set_cores(self, cores: int) -> None:
        self._command(cores=max(1, int(cores)))

    def set_share(self, share: float) -> None:
        """The busy share of wall time, clamped to [0.01, 1]."""
        self._command(share=_valid_share(share))

    def set_gpu(self, enabled: bool, devices: tuple[int, ...] = ()) -> None:
        """Compute on the GPU (these devices; empty: all) or not. A GPU that failed is
        tried again."""
        with self._lock:
            generation = self._commands.gpu_generation + 1
        self._command(
            gpu_enabled=bool(enabled), gpu_devices=tuple(devices or ()), gpu_generation=generation
        )

    def stop(self) -> None:
        """End the session: the next turn closes the job and the backend."""
        self._command(stopped=True)

    def wait(self, timeout_s: float | None) -> bool:
        """Block until a command arrives or `timeout_s` passes (a headless loop's rest).

        Returns:
            True when a command woke it.
        """
        return self._wake.wait(timeout_s)

    # -- what the front ends read ------------------------------------------------

    @property
    def share(self) -> float:
        with self._lock:
            return self._commands.share

    @property
    def cores(self) -> int:
        """The core count the current batch runs with (the setting between units)."""
        job = self._job
        if job is not None:
            return job.cores
        with self._lock:
            return self._commands.cores

    @property
    def blocked_reason(self) -> str:
        with self._lock:
            return self._commands.blocked

    @property
    def state(self) -> tuple[str, str]:
        """(state, reason) as the last StateChanged said."""
        return self._state

    @property
    def assignment(self) -> Assignment | None:
        """The unit being computed (also while paused), or None."""
        return self._assignment

    @property
    def blocks_done(self) -> int:
        job = self._job
        return job.blocks_done if job is not None else 0

    @property
    def blocks_total(self) -> int:
        job = self._job
        return job.blocks_total if job is not None else 0

    @property
    def backend_name(self) -> str:
        return self._backend.name if self._backend is not None else ""

    # -- the loop ------------------------------------------------------------------

    def turn(self) -> Iterator[Event]:
        """Run at most one batch; yields what happened, `NextTurn` last."""
        self._wake.clear()
        with self._lock:
            cmd = self._commands
        if cmd.stopped:
            self._close()
            yield from self._set_state("stopped", "")
            yield NextTurn(None)
            return
        self._apply(cmd)
        if cmd.paused:
            yield from self._set_state("paused", "paused by you")
        elif cmd.blocked:
            yield from self._set_state("waiting", cmd.blocked)
        elif cmd.failed:
            pass  # "error" was said with the failure; resume() clears it
        else:
            try:
                yield from self._compute(cmd)
                return
            except Exception as exc:  # noqa: BLE001 - every failure becomes an event
                yield from self._on_failure(exc)
                return
        yield NextTurn(None)

    def close(self) -> list[Event]:
        """Stop now, on the calling (compute) thread: close the job and the backend.

        The unit's checkpoint stays, so the next session resumes it.
        """
        self._command(stopped=True)
        return list(self.turn())

    # -- inside a turn ---------------------------------------------------------------

    def _set_state(self, state: str, reason: str) -> Iterator[Event]:
        if (state, reason) != self._state:
            self._state = (state, reason)
            yield StateChanged(state, reason)

    def _apply(self, cmd: _Commands) -> None:
        """Bring the backend and the job in line with the commands (between batches)."""
        self._duty.set_share(cmd.share)
        if self._job is not None:
            self._job.set_cores(cmd.cores)  # a GPU backend's batches ignore it
        if cmd.gpu_generation != self._gpu_generation:
            self._gpu_generation = cmd.gpu_generation
            self._gpu_refused = False
        if self._backend is not None:
            want_gpu = cmd.gpu_enabled and not self._gpu_refused
            other_devices = self._backend_is_gpu and self._backend_devices != cmd.gpu_devices
            if self._backend_is_gpu != want_gpu or other_devices:
                # Rebuilt on the next batch; the checkpoint keeps the finished blocks.
                self._drop_backend()

    def _ensure_backend(self, cmd: _Commands) -> Iterator[Event]:
        if self._backend is not None:
            return
        if not sieve_ready(self.params.sieve_k):
            # The first start on a machine builds the sieve (k = 31: about a minute).
            yield from self._set_state("preparing", "building the sieve, once (about a minute)")
        if cmd.gpu_enabled and not self._gpu_refused:
            # Every listed GPU (all when none are listed), one worker thread each.
            try:
                self._backend = self._make("gpu", self.params, devices=cmd.gpu_devices)
                self._backend_is_gpu = True
                self._backend_devices = cmd.gpu_devices
                return
            except BackendUnavailable as exc:
                self._gpu_refused = True
                log.warning("%s; computing on the CPU", exc)
                yield NoGpu(str(exc).removeprefix("no GPU: "))
        self._backend = self._make("cpu", self.params)
        self._backend_is_gpu = False
        self._backend_devices = ()

    def _compute(self, cmd: _Commands) -> Iterator[Event]:
        if self._unsent_block is not None:
            yield from self._report_block(self._unsent_block)
            return
        if self._job is None:
            if self._assignment is None:
                try:
                    work = self.work.next_work()
                except STORE_ERRORS as exc:  # the ledger cannot be read (or written)
                    yield from self._store_failed("could not ask the node for work", exc)
                    return
                if isinstance(work, Wait):
                    state = "idle" if work.state == "idle" else "syncing"
                    yield from self._set_state(state, work.reason)
                    yield NextTurn(work.retry_ms / 1000.0)
                    return
                if not isinstance(work, Assignment):
                    yield from self._block_task(cmd, work)
                    return
                # next_work() claimed it; renewals count from here.
                self._last_claim = self._clock()
                yield from self._open_job(cmd, work)
            else:
                # The backend changed (or failed) mid-unit: the same unit goes on.
                yield from self._open_job(cmd, self._assignment)
            if self._job is None:
                return  # its checkpoint could not be opened (StoreFailed said so)
        job, a = self._job, self._assignment
        assert job is not None and a is not None and self._backend is not None
        if job.done:  # its result could not be stored last time
            yield from self._finish(job, a)
            return
        backend = self._backend.name
        yield from self._set_state("computing", backend)
        yield BatchStarted(backend)
        t0 = time.perf_counter()
        try:
            blocks = job.step()
        except STORE_ERRORS as exc:
            # The checkpoint could not be written: the blocks stay with the job,
            # and its next step writes them again with its own.
            yield from self._store_failed(f"could not write unit {a.unit}'s checkpoint", exc)
            return
        busy = time.perf_counter() - t0
        rest = self._duty.rest_after(busy)
        numbers = sum(b.numbers for b in blocks)
        self._unit_busy_s += busy + rest
        self._unit_blocks_run += len(blocks)
        yield BatchDone(backend, numbers, busy, rest, checkpointed=bool(blocks))
        yield self._progress(backend, busy + rest if blocks else 0.0)
        if self._clock() - self._last_claim > self.work.claim_renew_s:
            # A long unit keeps its claim, so other nodes stay off it.
            self._last_claim = self._clock()
            self.work.renew_claim(a.unit)
        if job.done:
            yield from self._finish(job, a, rest)
            return
        yield NextTurn(rest)

    def _open_job(self, cmd: _Commands, assignment: Assignment) -> Iterator[Event]:
        yield from self._ensure_backend(cmd)
        assert self._backend is not None
        if self._assignment is None or self._assignment.unit != assignment.unit:
            self._unit_busy_s = 0.0
            self._unit_blocks_run = 0
        self._assignment = assignment
        try:
            # The backend sizes each batch: a block per core, or whole launches on a GPU.
            self._job = Verifier(
                self.params,
                assignment.lo,
                assignment.hi,
                self._backend,
                cores=cmd.cores,
                checkpoint=assignment.checkpoint,
            )
        except STORE_ERRORS as exc:
            yield from self._store_failed(f"could not open unit {assignment.unit}'s checkpoint", exc)
            return
        yield UnitStarted(assignment, self._job.blocks_done, self._job.blocks_total)
        if self._job.blocks_done:
            yield self._progress("checkpoint")

    def _progress(self, backend: str, batch_s: float = 0.0) -> Progress:
        job, a = self._job, self._assignment
        assert job is not None and a is not None
        eta = None
        if self._unit_blocks_run:
            per_block = self._unit_busy_s / self._unit_blocks_run
            eta = per_block * (job.blocks_total - job.blocks_done)
        return Progress(a.unit, job.blocks_done, job.blocks_total, eta, backend, batch_s)

    def _finish(self, job: Verifier, a: Assignment, rest: float = 0.0) -> Iterator[Event]:
        result = job.result()
        try:
            cid = self.work.submit(a, result)
        except STORE_ERRORS as exc:
            # Nothing is lost: the job holds every block (and the checkpoint too);
            # the next turn stores the same result again.
            yield from self._store_failed(f"could not store unit {a.unit}'s result", exc)
            return
        job.discard_checkpoint()
        job.close()
        self._job = None
        self._assignment = None
        self.units_done += 1
        yield UnitDone(
            unit=a.unit,
            root_hex=result.root.hex(),
            cid=cid,
            seconds=result.seconds,
            backend=result.backend,
            numbers=a.hi - a.lo,
            candidates=len(result.candidates),
        )
        yield NextTurn(rest)

    def _block_task(self, cmd: _Commands, task: Any) -> Iterator[Event]:
        """Recompute one block of someone else's record and report it."""
        yield from self._ensure_backend(cmd)
        assert self._backend is not None
        backend = self._backend.name
        what = block_task_label(task.purpose)
        yield from self._set_state("computing", f"{backend}, {what}")
        yield BlockTaskStarted(task)
        yield BatchStarted(backend)
        t0 = time.perf_counter()
        evidence = self._backend.run_block(task.lo, task.hi)
        busy = time.perf_counter() - t0
        rest = self._duty.rest_after(busy)
        yield BatchDone(backend, task.hi - task.lo, busy, rest, checkpointed=False)
        self.blocks_checked += 1
        yield from self._report_block(_UnsentBlock(task, evidence, busy, backend), rest)

    def _report_block(self, unsent: _UnsentBlock, rest: float = 0.0) -> Iterator[Event]:
        task = unsent.task
        try:
            cid = self.work.submit_block(task, unsent.evidence)
        except STORE_ERRORS as exc:
            self._unsent_block = unsent  # reported on the next turn
            yield from self._store_failed(f"could not store a {task.purpose} result", exc)
            return
        self._unsent_block = None
        leaf = unsent.evidence.leaf()
        if task.claimed_leaf is not None:
            agrees = leaf == task.claimed_leaf
        else:
            agrees = leaf != task.disputed_leaf
        yield BlockTaskDone(
            task.purpose, task.work_cid, task.block, agrees, cid, unsent.busy_s, unsent.backend
        )
        yield NextTurn(rest)

    def _store_failed(self, what: str, exc: BaseException) -> Iterator[Event]:
        log.error("%s (%s); retrying in %.0f s", what, exc, self.store_retry_s)
        yield StoreFailed(what, exc, self.store_retry_s)
        yield from self._set_state("error", f"{what}: {exc}")
        yield NextTurn(self.store_retry_s)

    def _on_failure(self, exc: Exception) -> Iterator[Event]:
        if self._backend_is_gpu and self._backend is not None:
            log.warning("the GPU failed (%s); computing on the CPU", exc, exc_info=exc)
            self._gpu_refused = True
            self._drop_backend()
            yield GpuFailed(exc)
            yield NextTurn(0.0)
            return
        log.error("the engine failed", exc_info=exc)
        self._command(failed=True)
        self._drop_backend()
        yield Failed(exc)
        yield from self._set_state("error", str(exc) or type(exc).__name__)
        yield NextTurn(None)

    def _drop_backend(self) -> None:
        if self._job is not None:
            self._job.close()
            self._job = None
        if self._backend is not None:
            try:
                self._backend.close()
            except Exception:  # noqa: BLE001 - a broken device may fail to close
                log.exception("closing the %s backend failed", self._backend.name)
            self._backend = None

    def _close(self) -> None:
        self._drop_backend()
        self._unit_busy_s = 0.0


def _valid_share(share: float) -> float:
    return min(1.0, max(0.01, float(share)))
