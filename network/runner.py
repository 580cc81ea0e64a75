"""A headless contributor: a contributor session and a node, on two threads.

`NodeRunner` owns a started `Node`, a network thread that polls it, and a
compute loop (run on the caller's thread by `run()`) over a
`network.contributor.ContributorSession` fed by `NodeWork`: the same session,
in the same order, as the desktop app's engine worker. This module only turns
the session's events into log lines, counters (`RunStats`, read by the metrics)
and the status file. `stop()` (from a signal handler or another thread) ends
both loops between batches; the unit's checkpoint stays, so the next start
resumes it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine import Assignment, make_backend
from engine.files import write_atomic
from engine.job import Backend
from network.contributor import (
    BatchDone,
    BlockTaskDone,
    ContributorSession,
    Event,
    Failed,
    GpuFailed,
    NextTurn,
    NodeWork,
    NoGpu,
    Progress,
    StateChanged,
    StoreFailed,
    UnitDone,
    UnitStarted,
    WorkSource,
)
from network.contributor.session import STORE_RETRY_S
from network.node import Node
from network.runstats import RunStats

log = logging.getLogger("hailstone.runner")

# The longest the loop rests without looking at its stop flag (a session that waits
# for a command wakes on one anyway).
MAX_REST_S = 1.0
# One network poll's budget (s): at most this long before a stop is seen, at least
# this long per call.
NET_POLL_MAX_S = 1.0
NET_POLL_MIN_S = 0.05
# Kept for callers that name it: the wait after a failed store.
SUBMIT_RETRY_S = STORE_RETRY_S
# States the metrics know; the session's "waiting" and "stopped" never occur here
# (no policy blocks a headless node; stopped reads as idle).
_METRIC_STATE = {"waiting": "paused", "stopped": "idle"}


class NodeRunner:
    """Drives one node: compute loop + network loop + status file."""

    def __init__(
        self,
        node: Node,
        *,
        backend: str = "cpu",
        gpu_devices: tuple[int, ...] = (),
        cores: int = 1,
        share: float = 1.0,
        status_file: Path | None = None,
        status_interval_s: float = 2.0,
        progress: Callable[[NodeRunner], None] | None = None,
        backend_factory: Callable[..., Backend] = make_backend,
        work: WorkSource | None = None,
    ) -> None:
        """`work` defaults to the node's (`NodeWork`); tests of the shared session
        pass an in-memory source."""
        self.node = node
        # The backend asked for, then the one computing (a missing GPU reads "cpu").
        self.backend_name = backend
        self.gpu_devices = tuple(gpu_devices)  # empty: every GPU
        self.cores = max(1, cores)
        self.status_file = status_file
        self.status_interval_s = status_interval_s
        self.session = ContributorSession(
            node.params,
            work if work is not None else NodeWork(node),
            cores=self.cores,
            share=share,
            gpu_enabled=backend == "gpu",
            gpu_devices=self.gpu_devices,
            backend_factory=backend_factory,
        )
        self.state = "idle"
        self._progress = progress
        self._stop = threading.Event()
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
        self.session.stop()

    def pause(self) -> None:
        self.session.pause()

    def resume(self) -> None:
        self.session.resume()

    def set_share(self, share: float) -> None:
        self.session.set_share(share)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- loops ---------------------------------------------------------------------

    def _network_loop(self) -> None:
        last_status = 0.0
        while not self._stop.is_set():
            # poll() blocks until a message arrives (no busy polling); it returns by
            # the next status write, and within NET_POLL_MAX_S for a stop.
            budget = last_status + self.status_interval_s - time.monotonic()
            try:
                self.node.poll(min(NET_POLL_MAX_S, max(NET_POLL_MIN_S, budget)))
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
            with self.node.loop_time.step("status"):
                doc = self.node.status().to_json(self.state)
        except Exception:  # noqa: BLE001 - status must never kill the loop
            log.exception("status failed")
            return
        doc["unit"] = self.current.unit if self.current else None
        doc["blocks_done"] = self.blocks_done
        doc["blocks_total"] = self.blocks_total
        doc["units_done"] = self.units_done
        try:
            # Rewritten every status interval: no fsync (a power loss costs one).
            write_atomic(self.status_file, json.dumps(doc).encode("utf-8"), durable=False)
        except OSError as exc:
            log.warning("cannot write status file %s: %s", self.status_file, exc)

    def run(self) -> None:
        """The compute loop; returns after stop(). Starts the network thread first."""
        self._net_thread = threading.Thread(
            target=self._network_loop, name="hailstone-net", daemon=True
        )
        self._net_thread.start()
        try:
            while not self._stop.is_set():
                delay: float | None = None
                for event in self.session.turn():
                    if isinstance(event, NextTurn):
                        delay = event.delay_s
                    else:
                        self._on_event(event)
                if delay is None or delay > 0:
                    self.session.wait(MAX_REST_S if delay is None else min(delay, MAX_REST_S))
        finally:
            for event in self.session.close():
                self._on_event(event)
            self._stop.set()
            if self._net_thread is not None:
                self._net_thread.join()
            self.state = "idle"

    # --- events --------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        match event:
            case StateChanged(state=state, reason=reason):
                self.state = _METRIC_STATE.get(state, state)
                if state == "preparing":
                    self._say(reason)
            case UnitStarted(assignment=a):
                self.current = a
                self.blocks_done = event.resumed_blocks
                self.blocks_total = event.blocks_total
            case Progress():
                self.blocks_done = event.blocks_done
                self.blocks_total = event.blocks_total
                if self._progress is not None:
                    self._progress(self)
            case BatchDone():
                self.backend_name = event.backend
                self.stats.batch(event.backend, event.numbers, event.busy_s)
                if event.checkpointed:
                    self.stats.checkpoint_written()
            case UnitDone():
                self.current = None
                self.units_done += 1
                self.stats.unit_finished()
            case BlockTaskDone():
                self.stats.block_checked()
            case NoGpu(reason=reason):
                self.backend_name = "cpu"
                self._say(f"no GPU: {reason}; computing on the CPU")
            case GpuFailed(error=exc):
                self.backend_name = "cpu"
                self._say(f"the GPU failed ({exc}); computing on the CPU")
                self.stats.error(f"the GPU failed: {exc}")
            case StoreFailed():
                self.stats.error(f"{event.what} ({event.error})")
            case Failed(error=exc):
                # Not a GPU, not a full disk: a bug or a broken machine. The unit's
                # checkpoint keeps what was done; the service manager restarts us.
                raise exc

    @staticmethod
    def _say(message: str) -> None:
        log.warning("%s", message)
        print(f"hailstone: {message}", file=sys.stderr)
