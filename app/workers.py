"""QThread adapters: the engine worker, the network poller, and one-shot jobs.

STYLE §2: each long-running loop is a QObject moved to its own QThread that
lives as long as the app. The engine worker runs one turn of the shared
contributor session (network/contributor/session.py: one batch) per event-loop
turn, rescheduling itself with a single-shot QTimer, so pause, throttle and
settings commands queued by the GUI arrive between batches. Duty-cycle rest is
a timer delay, not a sleep.
The GUI talks to workers only through signals; `WorkerThreads.stop()` stops,
quits and waits for every thread.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, QTimer, Signal, Slot

from app.messages import classify_exception
from app.network_bridge import (
    BatchDone,
    BatchStarted,
    BlockTaskDone,
    BlockTaskStarted,
    ContributorSession,
    Failed,
    GpuFailed,
    NextTurn,
    NoGpu,
    Progress,
    StateChanged,
    StoreFailed,
    UnitDone,
    UnitStarted,
    WorkBridge,
)
from engine import Params, make_backend

log = logging.getLogger(__name__)

# Every WorkerThread made (tests check that none is left running).
LIVE_THREADS: weakref.WeakSet = weakref.WeakSet()

# The network worker: one poll (of at most POLL_BUDGET_S) per timer turn; the pages'
# snapshot (status, history, leaderboard) at most every SNAPSHOT_INTERVAL_S.
POLL_INTERVAL_MS = 50
POLL_BUDGET_S = 0.2
SNAPSHOT_INTERVAL_S = 1.0


class EngineWorker(QObject):
    """The app's front end of a `ContributorSession`, one turn per event-loop turn.

    The session (network/contributor/session.py, shared with the headless node)
    does the work: the order of units and block tasks, checkpoints, claim
    renewal, waits after a failed store, the GPU's fallback to the CPU. This
    worker queues its commands, runs `turn()` from a single-shot timer (so
    commands queued by the GUI arrive between batches, and a duty-cycle rest is
    a timer delay, not a sleep) and turns the events into signals.

    Signals:
        rate_sample(backend, numbers_per_second, batch_seconds): after each batch,
            counting every integer and including the duty-cycle rest.
        block_done(Progress): after each batch (and once for restored blocks).
        unit_started(Assignment): a unit began (or resumed from its checkpoint).
        unit_done(UnitDone): a unit finished and was handed to the bridge.
        block_task_started(BlockTask), block_task_done(BlockTaskDone): a block of
            someone else's record (spot-check, dispute confirmation) in network mode.
        state_changed(state, reason): state is "computing", "paused", "waiting",
            "preparing", "syncing", "idle", "error" or "stopped"; reason is a short phrase.
        warning(code, detail), error(code, detail): for app/messages.py.
        batch_started(): just before a batch runs (tests count batches).
    """

    rate_sample = Signal(str, float, float)
    block_done = Signal(object)
    unit_started = Signal(object)
    unit_done = Signal(object)
    block_task_started = Signal(object)
    block_task_done = Signal(object)
    state_changed = Signal(str, str)
    warning = Signal(str, str)
    error = Signal(str, str)
    batch_started = Signal()

    def __init__(
        self,
        params: Params,
        bridge: WorkBridge,
        *,
        cores: int = 1,
        share: float = 1.0,
        gpu_enabled: bool = False,
        gpu_devices: tuple[int, ...] = (),
        backend_factory: Callable[..., Any] = make_backend,
    ) -> None:
        super().__init__()
        self.params = params
        self.bridge = bridge
        self.session = ContributorSession(
            params,
            bridge,
            cores=cores,
            share=share,
            gpu_enabled=gpu_enabled,
            gpu_devices=tuple(gpu_devices),
            backend_factory=backend_factory,
        )
        self._running = False
        self._stopped = False
        # A child timer moves to the worker thread with its parent.
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._tick)

    # -- commands (queued slots) ------------------------------------------------

    @Slot()
    def start(self) -> None:
        """Begin (or continue) computing."""
        self._running = True
        self._schedule(0)

    @Slot()
    def pause(self) -> None:
        self.session.pause()
        self._timer.stop()
        self._turn()  # says "paused" now, computes nothing

    @Slot()
    def resume(self) -> None:
        self.session.resume()
        if self._running:
            self._schedule(0)

    @Slot(str)
    def set_blocked(self, reason: str) -> None:
        """A policy reason not to compute now ("" lets it run)."""
        was = self.session.blocked_reason
        self.session.set_blocked(reason)
        if reason and reason != was:
            # A new reason (say, a snooze replaced by "on battery") reaches the
            # dashboard and the tray too, not only the first one.
            self._timer.stop()
            self._turn()
        elif not reason and was and self._running:
            self._schedule(0)

    @Slot(int)
    def set_cores(self, cores: int) -> None:
        self.session.set_cores(cores)

    @Slot(float)
    def set_share(self, share: float) -> None:
        self.session.set_share(share)
        if self._running and self._timer.isActive() and self._timer.remainingTime() > 0:
            self._schedule(0)  # a long rest under the old share ends now

    @Slot(bool, object)
    def set_gpu(self, enabled: bool, devices: Any = ()) -> None:
        self.session.set_gpu(bool(enabled), tuple(devices or ()))

    @Slot()
    def stop(self) -> None:
        """Stop for good (before the thread quits): close files and the backend."""
        self._stopped = True
        self._timer.stop()
        for event in self.session.close():
            self._emit(event)

    # -- state --------------------------------------------------------------------

    @property
    def share(self) -> float:
        return self.session.share

    @property
    def batch_cores(self) -> int:
        """The core count the current job runs with (tests read it)."""
        return self.session.cores

    def _schedule(self, delay_ms: int) -> None:
        if not self._stopped:
            self._timer.start(max(0, int(delay_ms)))

    # -- the loop -----------------------------------------------------------------

    @Slot()
    def _tick(self) -> None:
        if self._stopped or not self._running:
            return
        self._turn()

    def _turn(self) -> None:
        if self._stopped:
            return
        for event in self.session.turn():
            if isinstance(event, NextTurn):
                if event.delay_s is not None and self._running:
                    self._schedule(int(event.delay_s * 1000))
            else:
                self._emit(event)

    def _emit(self, event: Any) -> None:
        """One session event as the signal(s) the GUI listens to."""
        match event:
            case StateChanged(state=state, reason=reason):
                self.state_changed.emit(state, reason)
            case UnitStarted(assignment=a):
                self.unit_started.emit(a)
            case BatchStarted():
                self.batch_started.emit()
            case BatchDone(backend=backend, numbers=numbers, busy_s=busy, rest_s=rest):
                if numbers and busy > 0:
                    self.rate_sample.emit(backend, numbers / (busy + rest), busy + rest)
            case Progress():
                self.block_done.emit(event)
            case UnitDone():
                # A candidate is raised by the controller (banner, notification),
                # from this signal in solo mode and from the network state otherwise.
                self.unit_done.emit(event)
            case BlockTaskStarted(task=task):
                self.block_task_started.emit(task)
            case BlockTaskDone():
                self.block_task_done.emit(event)
            case NoGpu(reason=reason):
                self.warning.emit("no_gpu", reason)
            case GpuFailed(error=exc):
                self.warning.emit("gpu_failed", classify_exception(exc)[1])
            case StoreFailed(error=exc) | Failed(error=exc):
                self.error.emit(*classify_exception(exc))


class NetworkWorker(QObject):
    """Starts and polls the network node off the GUI thread, and reports what it sees.

    `start` opens the node (seconds: IPFS, the ledger) in this worker's thread;
    a timer then runs one `poll` per event-loop turn, so `stop` arrives between
    polls. In solo mode it only reports the status now and then.

    Signals:
        started(object): None when the node runs, else a StartFailure (solo mode).
        status(BridgeStatus): at most every second.
        snapshot(NetworkSnapshot): status, history, leaderboard, username owners.
        peers_changed(int): the number of connected peers changed.
        record_accepted(kind_and_source, cid), record_rejected(detail): gossip verdicts.
        events(list): every NetEvent of a poll (published, acknowledged, ...).
        warning(code, detail): for app/messages.py.
    """

    started = Signal(object)
    status = Signal(object)
    snapshot = Signal(object)
    peers_changed = Signal(int)
    record_accepted = Signal(str, str)
    record_rejected = Signal(str)
    events = Signal(list)
    warning = Signal(str, str)

    def __init__(self, bridge: WorkBridge, interval_ms: int = POLL_INTERVAL_MS) -> None:
        super().__init__()
        self.bridge = bridge
        self._peers = -1
        self._last_snapshot = 0.0
        self._stopped = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)

    def cancel(self) -> None:
        """Give up a start in progress (any thread): quitting must not wait for IPFS.

        The node being opened is stopped as soon as its start returns.
        """
        self._stopped = True
        self.bridge.cancel_start()

    @Slot()
    def start(self) -> None:
        """Start the node (if the profile allows network mode), then poll."""
        if self._stopped:
            return
        failure = self.bridge.start_network()
        self.started.emit(failure)
        self._report()
        if not self._stopped:
            self._timer.start()

    @Slot()
    def poll(self) -> None:
        evs = self.bridge.poll(POLL_BUDGET_S) if not self.bridge.solo else []
        for ev in evs:
            if ev.kind == "accepted":
                self.record_accepted.emit(ev.text, ev.cid)
            elif ev.kind == "rejected":
                self.record_rejected.emit(ev.text)
            elif ev.kind == "warning":
                self.warning.emit("network_warning", ev.text)
        if evs:
            self.events.emit(evs)
        if time.monotonic() - self._last_snapshot >= SNAPSHOT_INTERVAL_S:
            self._report()

    def _report(self) -> None:
        self._last_snapshot = time.monotonic()
        try:
            snap = self.bridge.snapshot()
        except Exception as exc:
            log.exception("network status failed")
            self.warning.emit("network_warning", f"status failed: {exc}")
            return
        if snap.status.peers != self._peers:
            self._peers = snap.status.peers
            self.peers_changed.emit(self._peers)
        self.status.emit(snap.status)
        self.snapshot.emit(snap)

    @Slot(int)
    def set_bandwidth_limit(self, kib: int) -> None:
        """Pace the node at `kib` KiB/s each way from now on (0: no limit)."""
        try:
            self.bridge.set_bandwidth_limit(kib)
        except Exception as exc:  # a failed change must not end the network loop
            log.exception("changing the bandwidth limit failed")
            self.warning.emit("network_warning", f"bandwidth limit not applied: {exc}")

    @Slot()
    def stop(self) -> None:
        self._stopped = True
        self._timer.stop()
        self.bridge.stop()


class WorkerThread:
    """A worker QObject in a QThread that lives as long as the app."""

    def __init__(self, worker: QObject, name: str) -> None:
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.start()
        LIVE_THREADS.add(self)

    def stop(self, stop_slot: Callable[[], None] | None = None, timeout_ms: int = 60000) -> bool:
        """Queue the worker's stop slot in its thread, let the thread quit, and wait.

        Nothing here blocks on the worker's event loop (no blocking-queued call), so
        a worker busy in a long call cannot freeze the GUI beyond `timeout_ms`.

        Returns:
            True when the thread finished; False when it was still running after
            `timeout_ms` (it is kept referenced, never destroyed while running).
        """
        if not self.thread.isRunning():
            return True
        stopper = _Stopper(stop_slot)
        stopper.moveToThread(self.thread)
        inv = _Invoker()
        inv.call.connect(stopper.run)  # queued: stopper lives in the worker's thread
        inv.call.emit()
        self._stopper = stopper  # alive until it ran
        finished = self.thread.wait(timeout_ms)
        if not finished:
            log.error(
                "thread %s did not stop within %d ms; left running",
                self.thread.objectName(),
                timeout_ms,
            )
            STUCK_THREADS.append(self)
        return finished


# Threads that did not stop in time: a QThread destroyed while running aborts
# the process, so these stay referenced until the process exits.
STUCK_THREADS: list[WorkerThread] = []


class _Invoker(QObject):
    call = Signal()


class _Stopper(QObject):
    """Runs a worker's stop slot in the worker's thread, then ends that thread's loop."""

    def __init__(self, stop_slot: Callable[[], None] | None) -> None:
        super().__init__()
        self._stop_slot = stop_slot

    @Slot()
    def run(self) -> None:
        try:
            if self._stop_slot is not None:
                self._stop_slot()
        except Exception:
            log.exception("worker stop failed")
        finally:
            QThread.currentThread().quit()


class JobSignals(QObject):
    """Signals of a one-shot job (a QRunnable is not a QObject)."""

    finished = Signal(object)
    failed = Signal(object)


class Job(QRunnable):
    """A one-shot call on the global QThreadPool; result or exception via signals."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.signals = JobSignals()
        self.relay: _Relay | None = None

    def run(self) -> None:
        try:
            out = self.fn()
        except Exception as exc:  # reported to the GUI, never lost
            self.signals.failed.emit(exc)
            return
        self.signals.finished.emit(out)


# Jobs started and not yet reported back: the pool does not own them (no
# auto-delete), so they stay referenced here until their callback ran.
_ACTIVE_JOBS: set[Job] = set()


class _Relay(QObject):
    """Lives in the caller's thread, so a job's callbacks (lambdas included) run there.

    A plain callable connected to a signal emitted on a pool thread would run on
    that pool thread; a slot of a QObject runs in the QObject's thread.
    """

    def __init__(
        self,
        job: Job,
        on_done: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        owner: QObject | None,
    ) -> None:
        super().__init__()
        self._job = job
        self._on_done = on_done
        self._on_error = on_error
        self._owner = owner

    def _owner_gone(self) -> bool:
        # A page or wizard closed while its job ran: nobody is left to tell.
        return self._owner is not None and not shiboken6.isValid(self._owner)

    @Slot(object)
    def done(self, out: Any) -> None:
        _ACTIVE_JOBS.discard(self._job)
        if not self._owner_gone():
            self._on_done(out)

    @Slot(object)
    def fail(self, exc: Any) -> None:
        _ACTIVE_JOBS.discard(self._job)
        if not self._owner_gone():
            self._on_error(exc)


def run_job(
    fn: Callable[[], Any],
    on_done: Callable[[Any], None],
    on_error: Callable[[Exception], None],
    owner: QObject | None = None,
) -> Job:
    """Start `fn` on the thread pool; callbacks run on the caller's (GUI) thread.

    Args:
        fn: the work (runs on a pool thread).
        on_done, on_error: called with the result or the exception.
        owner: the widget the callbacks belong to; when it is deleted before the
            job ends, they are not called. Defaults to the QObject a callback is
            a bound method of.
    """
    if owner is None:
        for cb in (on_done, on_error):
            if isinstance(getattr(cb, "__self__", None), QObject):
                owner = cb.__self__
                break
    job = Job(fn)
    job.setAutoDelete(False)  # kept in _ACTIVE_JOBS until its callback ran
    relay = _Relay(job, on_done, on_error, owner)
    job.relay = relay
    job.signals.finished.connect(relay.done)
    job.signals.failed.connect(relay.fail)
    _ACTIVE_JOBS.add(job)
    QThreadPool.globalInstance().start(job)
    return job


def active_jobs() -> int:
    """How many jobs have not reported back yet (tests check none leak)."""
    return len(_ACTIVE_JOBS)
