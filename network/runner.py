"""A headless contributor: the engine and the node, on two threads.

`NodeRunner` owns a started `Node`, a network thread that polls it, and a
compute loop (run on the caller's thread by `run()`) that takes tasks from the
node: a block to recompute (dispute confirmations first, then spot-checks) or
the next unit, which it computes block by block with a checkpoint. `stop()`
(from a signal handler or another thread) ends both loops between batches;
the unit's checkpoint stays, so the next start resumes it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine import BackendUnavailable, DutyCycle, Verifier, make_backend
from engine.files import write_atomic
from engine.job import Backend
from network.ledger import LedgerError
from network.node import Assignment, BlockTask, Node
from network.runstats import RunStats

log = logging.getLogger("hailstone.runner")

IDLE_WAIT_S = 1.0
# After a result could not be stored (disk full, say), wait this long before retrying.
SUBMIT_RETRY_S = 30.0


class NodeRunner:
    """Drives one node: compute loop + network loop + status file."""

    def __init__(
        self,
        node: Node,
        *,
        backend: str = "cpu",
        gpu_devices: tuple[int, ...] = (),
        cores: int = 1,
        status_file: Path | None = None,
        status_interval_s: float = 2.0,
        progress=None,
        backend_factory: Callable[..., Backend] = make_backend,
    ) -> None:
        self.node = node
        self.backend_name = backend
        self.gpu_devices = tuple(gpu_devices)  # empty: every GPU
        self.cores = max(1, cores)
        self.status_file = status_file
        self.status_interval_s = status_interval_s
        self.duty = DutyCycle(1.0)
        self.state = "idle"
        self._progress = progress
        self._make_backend = backend_factory
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._net_thread: threading.Thread | None = None
        self.current: Assignment | None = None
        self.blocks_done = 0
        self.blocks_total = 0
        self.units_done = 0
        # Counters for the metrics endpoint (network/metrics.py reads them).
        self.stats = RunStats()

    # --- control -------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- loops ---------------------------------------------------------------------

    def _network_loop(self) -> None:
        last_status = 0.0
        while not self._stop.is_set():
            try:
                self.node.poll(0.25)
            except Exception:  # noqa: BLE001 - the loop must survive anything a peer sends
                log.exception("network poll failed")
            now = time.monotonic()
            if now - last_status >= self.status_interval_s:
                last_status = now
                self.write_status()
        self.write_status()

    def write_status(self) -> None:
        if self.status_file is None:
            return
        try:
            doc = self.node.status().to_json(self.state)
        except Exception:  # noqa: BLE001 - status must never kill the loop
            log.exception("status failed")
            return
        doc["unit"] = self.current.unit if self.current else None
        doc["blocks_done"] = self.blocks_done
        doc["blocks_total"] = self.blocks_total
        doc["units_done"] = self.units_done
        try:
            write_atomic(self.status_file, json.dumps(doc).encode("utf-8"))
        except OSError as exc:
            log.warning("cannot write status file %s: %s", self.status_file, exc)

    def run(self) -> None:
        """The compute loop; returns after stop(). Starts the network thread first."""
        self._net_thread = threading.Thread(
            target=self._network_loop, name="hailstone-net", daemon=True
        )
        self._net_thread.start()
        try:
            backend = self._make_backend(
                self.backend_name, self.node.params, devices=self.gpu_devices
            )
        except BackendUnavailable as exc:
            # "no GPU: <reason>", said once; the CPU does the work instead.
            self._say(f"{exc}; computing on the CPU")
            backend = self._make_backend("cpu", self.node.params)
        try:
            while not self._stop.is_set():
                if self._paused.is_set():
                    self.state = "paused"
                    self._stop.wait(0.2)
                    continue
                if not self.node.is_synced():
                    self.state = "syncing"
                    self._stop.wait(0.2)
                    continue
                try:
                    self._turn(backend)
                except Exception as exc:
                    if backend.name != "gpu":
                        raise
                    # The GPU failed mid-run (a driver reset, say): the CPU takes
                    # over; the unit's checkpoint keeps every finished batch.
                    self._say(f"the GPU failed ({exc}); computing on the CPU")
                    self.stats.error(f"the GPU failed: {exc}")
                    try:
                        backend.close()
                    except Exception:  # noqa: BLE001 - a broken device may fail to close
                        log.exception("closing the failed GPU backend")
                    backend = self._make_backend("cpu", self.node.params)
        finally:
            backend.close()
            self._stop.set()
            if self._net_thread is not None:
                self._net_thread.join()
            self.state = "idle"

    @staticmethod
    def _say(message: str) -> None:
        log.warning("%s", message)
        print(f"hailstone: {message}", file=sys.stderr)

    def _wait_after_failure(self, what: str) -> None:
        """A result or checkpoint could not be stored (a full disk, say): log it,
        show "error", and wait SUBMIT_RETRY_S (or until stop) before going on."""
        log.error("%s; retrying later", what)
        self.stats.error(what)
        self.state = "error"
        self._stop.wait(SUBMIT_RETRY_S)

    def _turn(self, backend: Backend) -> None:
        """One round: a block to recompute, else the next unit, else wait."""
        task = self.node.next_block_task()
        if task is not None:
            self._run_block_task(task, backend)
            return
        assignment = self.node.next_assignment()
        if assignment is None:
            task = self.node.next_block_task(idle=True)
            if task is not None:
                self._run_block_task(task, backend)
                return
            self.state = "idle"
            self._stop.wait(IDLE_WAIT_S)
            return
        self._compute(assignment, backend)

    def _run_block_task(self, task: BlockTask, backend: Backend) -> None:
        self.state = "computing"
        t0 = time.perf_counter()
        evidence = backend.run_block(task.lo, task.hi)
        self.stats.batch(backend.name, task.hi - task.lo, time.perf_counter() - t0)
        self.stats.block_checked()
        try:
            self.node.submit_block(task, evidence)
        except (LedgerError, OSError) as exc:
            self._wait_after_failure(f"could not store a {task.purpose} result ({exc})")

    def _compute(self, a: Assignment, backend: Backend) -> None:
        self.current = a
        self.state = "computing"
        job = Verifier(
            self.node.params, a.lo, a.hi, backend, cores=self.cores, checkpoint=a.checkpoint
        )
        self.blocks_total = job.blocks_total
        self.blocks_done = job.blocks_done
        last_claim = time.monotonic()
        renew_every = max(5.0, self.node.config.claim_ttl_s / 3)
        try:
            while not job.done:
                if self._stop.is_set() or self._paused.is_set():
                    return  # the checkpoint keeps what is done
                t0 = time.perf_counter()
                before = job.blocks_done
                try:
                    job.step()
                except OSError as exc:
                    # The checkpoint could not be written (a full disk): wait and
                    # resume from what is on disk; nothing stored is lost.
                    self._wait_after_failure(f"could not write unit {a.unit}'s checkpoint ({exc})")
                    return
                busy = time.perf_counter() - t0
                self.blocks_done = job.blocks_done
                block_size = self.node.params.block_size
                self.stats.batch(backend.name, (job.blocks_done - before) * block_size, busy)
                self.stats.checkpoint_written()
                if self._progress is not None:
                    self._progress(self)
                if time.monotonic() - last_claim > renew_every:
                    self.node.claim(a.unit)
                    last_claim = time.monotonic()
                rest = self.duty.rest_after(busy)
                if rest:
                    self._stop.wait(rest)
            result = job.result()
            try:
                self.node.submit_unit(a, result)
            except (LedgerError, OSError) as exc:
                # Nothing is lost: the checkpoint holds every block, and the next
                # round resumes it (all blocks done) and submits again.
                self._wait_after_failure(f"could not store unit {a.unit}'s result ({exc})")
                return
            job.discard_checkpoint()
            self.units_done += 1
            self.stats.unit_finished()
        finally:
            job.close()
            self.current = None
