"""The contributor session (network/contributor/), and both front ends over it.

The front-end tests run twice: through the headless runner (network/runner.py,
a thread) and through the app's engine worker (app/workers.py, a QThread), and
assert the same outcomes: the same units published once, the same wait and
retry after a failed store, the same claim renewals, the same GPU fallback.
Real engine backends and real checkpoints throughout; the work source is an
in-memory stand-in for `NodeWork` (the node has its own tests; the logic above
it is what is tested here).
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from engine import Assignment, BackendUnavailable, Params, make_backend, sieve, verify_range
from engine.cpu import CpuBackend
from engine.sieve import load as load_sieve
from network.contributor import (
    BatchDone,
    BlockTaskDone,
    ContributorSession,
    Failed,
    NextTurn,
    NodeWork,
    StateChanged,
    StoreFailed,
    UnitDone,
    Wait,
)
from network.node import BlockTask
from tests.netutil import wait_until

PARAMS = Params.custom(name="sess", unit_bits=20, block_bits=16, sieve_k=16)
BLOCKS = PARAMS.blocks_per_unit


def _disk_full(path: object = "/data") -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


class Source:
    """An in-memory WorkSource: a queue of work, and what came back."""

    def __init__(self, folder: Path, *, units=(0,), tasks=(), renew_s: float = 1e9) -> None:
        self.folder = folder
        self.queue: list = [*tasks, *(Assignment.of_unit(PARAMS, u, folder) for u in units)]
        self.renew_s = renew_s
        self.fail_submits = 0
        self.fail_block_submits = 0
        self.submit_attempts = 0
        self.published: list[tuple[int, bytes]] = []
        self.blocks: list[tuple[str, int, bytes]] = []
        self.renewed: list[int] = []
        self._lock = threading.Lock()

    def next_work(self):
        with self._lock:
            if self.queue:
                return self.queue.pop(0)
        return Wait("idle", "nothing open", 20)

    def submit(self, assignment, result) -> str:
        self.submit_attempts += 1
        if self.fail_submits:
            self.fail_submits -= 1
            raise _disk_full(self.folder)
        self.published.append((assignment.unit, result.root))
        return f"cid-{assignment.unit}"

    def submit_block(self, task, evidence) -> str:
        if self.fail_block_submits:
            self.fail_block_submits -= 1
            raise _disk_full(self.folder)
        self.blocks.append((task.purpose, task.block, evidence.leaf()))
        return f"check-{task.block}"

    def renew_claim(self, unit: int) -> None:
        self.renewed.append(unit)

    @property
    def claim_renew_s(self) -> float:
        return self.renew_s


class Counting:
    """A backend factory that counts batches (real CPU backends)."""

    def __init__(self) -> None:
        self.batches = 0
        self.made: list[str] = []

    def __call__(self, name, params, **_kw):
        self.made.append(name)
        factory = self

        class _Backend(CpuBackend):
            def run_blocks(self, ranges, cores):
                factory.batches += 1
                return super().run_blocks(ranges, cores)

        return _Backend(params)


class FailingGpu:
    """A factory whose "gpu" is a real CPU backend that fails after `good` batches."""

    def __init__(self, good: int) -> None:
        self.good = good
        self.made: list[str] = []

    def __call__(self, name, params, **_kw):
        self.made.append(name)
        if name != "gpu":
            return CpuBackend(params)
        outer = self

        class _Gpu(CpuBackend):
            name = "gpu"

            def run_blocks(self, ranges, cores):
                if outer.good == 0:
                    raise RuntimeError("cudaErrorLaunchFailure: unspecified launch failure")
                outer.good -= 1
                return super().run_blocks(ranges, cores)

        return _Gpu(params)


def _root(unit: int) -> bytes:
    return verify_range(PARAMS, *PARAMS.unit_range(unit), "cpu").root


def _spot_check(unit: int, block: int) -> BlockTask:
    lo, _ = PARAMS.unit_range(unit)
    blo = lo + block * PARAMS.block_size
    leaf = verify_range(PARAMS, blo, blo + PARAMS.block_size, "reference").leaves[0]
    return BlockTask("spot-check", "bafy-work", block, blo, blo + PARAMS.block_size, leaf, ())


# ---- the two front ends, one interface ----------------------------------------


class _QuietNode:
    """What NodeRunner's network thread touches of a node (no status file here)."""

    params = PARAMS

    def poll(self, budget_s: float) -> list:
        threading.Event().wait(budget_s)
        return []


class Headless:
    name = "headless"

    def __init__(self, source, factory, backend: str) -> None:
        from network.runner import NodeRunner

        self.runner = NodeRunner(
            _QuietNode(), backend=backend, cores=1, backend_factory=factory, work=source
        )
        self.session = self.runner.session
        self.thread: threading.Thread | None = None
        self.raised: list[BaseException] = []

    def start(self) -> None:
        def run() -> None:
            try:
                self.runner.run()
            except BaseException as exc:  # noqa: BLE001 - the test reads it
                self.raised.append(exc)

        self.thread = threading.Thread(target=run, name="test-runner")
        self.thread.start()

    def pause(self) -> None:
        self.runner.pause()

    def resume(self) -> None:
        self.runner.resume()

    def state(self) -> str:
        return self.runner.state

    def errors(self) -> int:
        return self.runner.stats.snapshot().errors

    def wait_until(self, predicate, what: str) -> None:
        wait_until(predicate, 60, what)

    def stop(self) -> None:
        self.runner.stop()
        if self.thread is not None:
            self.thread.join(timeout=60)
            assert not self.thread.is_alive()


class App:
    name = "app"

    def __init__(self, source, factory, backend: str, qtbot) -> None:
        from PySide6.QtCore import QObject, Signal

        from app.workers import EngineWorker, WorkerThread

        class Commands(QObject):
            start = Signal()
            pause = Signal()
            resume = Signal()

        self.qtbot = qtbot
        self.worker = EngineWorker(
            PARAMS, source, cores=1, gpu_enabled=backend == "gpu", backend_factory=factory
        )
        self.session = self.worker.session
        self.states: list[str] = []
        self.messages: list[tuple[str, str]] = []
        self.worker.state_changed.connect(lambda s, _r: self.states.append(s))
        self.worker.error.connect(lambda c, d: self.messages.append((c, d)))
        self.worker.warning.connect(lambda c, d: self.messages.append((c, d)))
        self.commands = Commands()
        self.commands.start.connect(self.worker.start)
        self.commands.pause.connect(self.worker.pause)
        self.commands.resume.connect(self.worker.resume)
        self.thread = WorkerThread(self.worker, "test-engine")

    def start(self) -> None:
        self.commands.start.emit()

    def pause(self) -> None:
        self.commands.pause.emit()

    def resume(self) -> None:
        self.commands.resume.emit()

    def state(self) -> str:
        return self.states[-1] if self.states else ""

    def errors(self) -> int:
        return sum(1 for code, _ in self.messages if code in ("disk_full", "gpu_failed"))

    def wait_until(self, predicate, what: str) -> None:
        self.qtbot.waitUntil(lambda: bool(predicate()), timeout=60000)

    def stop(self) -> None:
        assert self.thread.stop(self.worker.stop)


@pytest.fixture(params=["headless", "app"])
def front(request, tmp_path):
    made = []

    def make(source, factory=make_backend, backend: str = "cpu"):
        if request.param == "headless":
            f = Headless(source, factory, backend)
        else:
            f = App(source, factory, backend, request.getfixturevalue("qtbot"))
        made.append(f)
        return f

    yield make
    for f in made:
        f.stop()


# ---- both front ends ------------------------------------------------------------


def test_a_unit_is_published_once_with_its_root_and_its_checkpoint_removed(front, tmp_path):
    source = Source(tmp_path, units=(0, 1))
    f = front(source)
    f.start()
    f.wait_until(lambda: len(source.published) == 2 and f.state() == "idle", "two units")
    assert source.published == [(0, _root(0)), (1, _root(1))]
    assert f.session.units_done == 2
    assert not list(tmp_path.glob("*.ckpt"))


def test_a_failed_store_waits_and_retries_and_loses_nothing(front, tmp_path):
    source = Source(tmp_path)
    source.fail_submits = 1
    f = front(source)
    f.session.store_retry_s = 0.05
    f.start()
    f.wait_until(lambda: source.published, "the unit stored on the second try")
    assert source.submit_attempts == 2
    assert source.published == [(0, _root(0))]  # once, and the same root
    assert f.errors() == 1


def test_a_failed_checkpoint_write_waits_and_retries(front, tmp_path, monkeypatch):
    from engine import checkpoint

    real = checkpoint.Checkpoint.append_many
    failures = [_disk_full(tmp_path)]

    def append_many(self, blocks):
        if failures:
            raise failures.pop()
        return real(self, blocks)

    monkeypatch.setattr(checkpoint.Checkpoint, "append_many", append_many)
    source = Source(tmp_path)
    f = front(source)
    f.session.store_retry_s = 0.05
    f.start()
    f.wait_until(lambda: source.published, "the unit after a failed checkpoint write")
    assert source.published == [(0, _root(0))]
    assert f.errors() == 1


@pytest.mark.parametrize("renew_s", [0.0, 1e9])
def test_claims_are_renewed_the_same_way(front, tmp_path, renew_s):
    source = Source(tmp_path, renew_s=renew_s)
    counting = Counting()
    f = front(source, counting)
    f.start()
    f.wait_until(lambda: source.published, "the unit")
    # Renewal is checked after every batch of the unit: each one when due at once,
    # none when the claim lasts longer than the unit.
    assert counting.batches == BLOCKS  # one block per batch on one core
    assert source.renewed == ([0] * BLOCKS if renew_s == 0.0 else [])


def test_block_tasks_come_first_and_are_reported(front, tmp_path):
    task = _spot_check(0, 5)
    source = Source(tmp_path, units=(1,), tasks=(task,))
    source.fail_block_submits = 1  # the first report is not stored: kept and retried
    f = front(source)
    f.session.store_retry_s = 0.05
    f.start()
    f.wait_until(lambda: source.published, "the unit after the spot-check")
    assert source.blocks == [("spot-check", 5, task.claimed_leaf)]
    assert f.session.blocks_checked == 1


def test_a_gpu_that_fails_mid_unit_hands_over_to_the_cpu(front, tmp_path):
    factory = FailingGpu(good=3)
    source = Source(tmp_path)
    f = front(source, factory, backend="gpu")
    f.start()
    f.wait_until(lambda: source.published, "the unit on the CPU")
    assert factory.made == ["gpu", "cpu"]
    assert source.published == [(0, _root(0))]
    assert f.errors() == 1


def test_a_missing_gpu_computes_on_the_cpu(front, tmp_path):
    def factory(name, params, **kw):
        if name == "gpu":
            raise BackendUnavailable("no GPU: CuPy is not installed")
        return make_backend(name, params, **kw)

    source = Source(tmp_path)
    f = front(source, factory, backend="gpu")
    f.start()
    f.wait_until(lambda: source.published, "the unit on the CPU")
    assert source.published == [(0, _root(0))]


def test_paused_computes_nothing_until_resumed(front, tmp_path):
    source = Source(tmp_path)
    counting = Counting()
    f = front(source, counting)
    f.pause()
    f.start()
    f.wait_until(lambda: f.state() == "paused", "paused")
    assert counting.batches == 0 and not source.published
    f.resume()
    f.wait_until(lambda: source.published, "the unit after resume")
    assert source.published == [(0, _root(0))]


# ---- the session itself -----------------------------------------------------------


def _turns(session: ContributorSession, n: int = 1) -> list:
    out = []
    for _ in range(n):
        out.extend(session.turn())
    return out


def test_each_turn_ends_with_next_turn_and_waits_map_to_states(tmp_path):
    class Waiting(Source):
        def __init__(self, wait):
            super().__init__(tmp_path, units=())
            self.wait = wait

        def next_work(self):
            return self.wait

    for wait, state in [
        (Wait("starting", "connecting", 500), "syncing"),
        (Wait("syncing", "catching up", 200), "syncing"),
        (Wait("idle", "nothing open", 1000), "idle"),
    ]:
        events = _turns(ContributorSession(PARAMS, Waiting(wait)))
        assert events == [StateChanged(state, wait.reason), NextTurn(wait.retry_ms / 1000)]


def test_a_batch_then_the_unit(tmp_path):
    load_sieve(PARAMS.sieve_k)  # built or read: the session has nothing to prepare
    source = Source(tmp_path)
    s = ContributorSession(PARAMS, source)
    first = _turns(s)
    assert isinstance(first[-1], NextTurn) and first[-1].delay_s == 0.0
    assert [type(e).__name__ for e in first] == [
        "UnitStarted", "StateChanged", "BatchStarted", "BatchDone", "Progress", "NextTurn",
    ]
    done = [e for e in _turns(s, BLOCKS - 1) if isinstance(e, UnitDone)]
    assert [(d.unit, d.root_hex, d.cid) for d in done] == [(0, _root(0).hex(), "cid-0")]
    assert s.close()[-1] == NextTurn(None)


def test_the_first_start_says_it_builds_the_sieve_before_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path / "fresh-cache"))
    sieve.forget_loaded()
    try:
        s = ContributorSession(PARAMS, Source(tmp_path))
        first = _turns(s)
        preparing = StateChanged("preparing", "building the sieve, once (about a minute)")
        assert first.index(preparing) < [type(e).__name__ for e in first].index("BatchStarted")
        assert sieve.ready(PARAMS.sieve_k)  # built, cached: the next start says nothing
        s.close()
        sieve.forget_loaded()
        second = ContributorSession(PARAMS, Source(tmp_path / "b"))
        again = _turns(second)
        second.close()
        assert all(getattr(e, "state", "") != "preparing" for e in again)
    finally:
        sieve.forget_loaded()


def test_a_throttled_session_rests_after_each_batch(tmp_path):
    s = ContributorSession(PARAMS, Source(tmp_path), share=0.25)
    batch = next(e for e in _turns(s) if isinstance(e, BatchDone))
    assert batch.rest_s == pytest.approx(batch.busy_s * 3)
    s.set_share(5.0)  # clamped: a share above 1 is 1
    assert s.share == 1.0
    batch = next(e for e in _turns(s) if isinstance(e, BatchDone))
    assert batch.rest_s == 0.0
    s.close()


def test_commands_from_another_thread_apply_at_the_next_turn(tmp_path):
    s = ContributorSession(PARAMS, Source(tmp_path), cores=1)
    _turns(s)
    t = threading.Thread(target=lambda: (s.set_cores(2), s.pause()))
    t.start()
    t.join()
    assert s.wait(0)  # a command wakes a waiting loop
    assert s.cores == 1  # the running job keeps its cores until the next turn
    assert _turns(s) == [StateChanged("paused", "paused by you"), NextTurn(None)]
    assert s.cores == 2
    s.resume()
    assert any(isinstance(e, BatchDone) for e in _turns(s))
    s.close()


def test_an_engine_failure_stops_until_resume(tmp_path):
    class Broken(CpuBackend):
        fail = True

        def run_blocks(self, ranges, cores):
            if Broken.fail:
                raise RuntimeError("a broken machine")
            return super().run_blocks(ranges, cores)

    source = Source(tmp_path)
    s = ContributorSession(PARAMS, source, backend_factory=lambda n, p, **k: Broken(p))
    events = _turns(s)
    failed = [e for e in events if isinstance(e, Failed)]
    assert len(failed) == 1 and str(failed[0].error) == "a broken machine"
    assert events[-2:] == [StateChanged("error", "a broken machine"), NextTurn(None)]
    assert _turns(s) == [NextTurn(None)]  # nothing runs until resume
    Broken.fail = False
    s.resume()
    for _ in range(BLOCKS + 2):
        _turns(s)
    assert source.published == [(0, _root(0))]


def test_a_store_failure_keeps_the_result_for_the_next_turn(tmp_path):
    source = Source(tmp_path)
    source.fail_submits = 2
    s = ContributorSession(PARAMS, source, store_retry_s=7.0)
    events = _turns(s, BLOCKS)
    assert [e.retry_s for e in events if isinstance(e, StoreFailed)] == [7.0]
    assert events[-2:] == [StateChanged("error", events[-2].reason), NextTurn(7.0)]
    assert "could not store unit 0's result" in events[-2].reason
    _turns(s)  # fails again
    assert source.published == []
    last = _turns(s)
    done = [e for e in last if isinstance(e, UnitDone)]
    assert [(d.unit, d.root_hex, d.cid) for d in done] == [(0, _root(0).hex(), "cid-0")]
    assert source.published == [(0, _root(0))] and source.submit_attempts == 3
    assert not list(tmp_path.glob("*.ckpt"))


def test_set_gpu_tries_a_gpu_again_after_it_failed(tmp_path):
    factory = FailingGpu(good=0)
    s = ContributorSession(PARAMS, Source(tmp_path), gpu_enabled=True, backend_factory=factory)
    _turns(s, 3)
    assert factory.made == ["gpu", "cpu"]
    factory.good = 100
    s.set_gpu(True, ())
    _turns(s)
    assert factory.made == ["gpu", "cpu", "gpu"]
    s.close()


# ---- NodeWork: the one order over a node ---------------------------------------------


class _Node:
    """A stand-in for network.node.Node's compute-side calls."""

    params = PARAMS

    def __init__(self, folder: Path, *, synced=True, tasks=(), idle_tasks=(), units=()) -> None:
        class Config:
            data_dir = folder
            claim_ttl_s = 90

        self.config = Config()
        self.synced = synced
        self.floor: int | None = None  # unit_floor(): a head's frontier hint
        self.floors: list[int | None] = []  # the floor of each take_unit
        self.tasks, self.idle_tasks, self.units = list(tasks), list(idle_tasks), list(units)
        self.claims: list[int] = []

    def is_synced(self) -> bool:
        return self.synced

    def unit_floor(self) -> int | None:
        return self.floor

    def next_block_task(self, *, idle: bool = False):
        pool = self.idle_tasks if idle else self.tasks
        return pool.pop(0) if pool else None

    def take_unit(self, *, floor: int | None = None):
        self.floors.append(floor)
        return self.units.pop(0) if self.units else None

    def claim(self, unit: int) -> None:
        self.claims.append(unit)


def test_node_work_order(tmp_path):
    due, idle = _spot_check(0, 1), _spot_check(0, 2)
    unit = Assignment.of_unit(PARAMS, 4, tmp_path / "checkpoints")
    node = _Node(tmp_path, tasks=[due], idle_tasks=[idle], units=[unit])
    work = NodeWork(node)
    assert [work.next_work() for _ in range(3)] == [due, unit, idle]
    assert work.next_work().state == "idle"
    assert work.claim_renew_s == 30.0  # a third of the claim's 90 s
    work.renew_claim(4)
    assert node.claims == [4]


def test_node_work_waits_while_the_node_holds_a_unit_back(tmp_path):
    from network.nodeparts.planner import Hold

    unit = Assignment.of_unit(PARAMS, 4, tmp_path / "checkpoints")
    work = NodeWork(_Node(tmp_path, units=[Hold("claimed unit 4; checking", 1.5), unit]))
    wait = work.next_work()
    assert isinstance(wait, Wait) and wait.state == "syncing" and wait.retry_ms == 1500
    assert work.next_work() is unit


def test_node_work_waits_for_the_catch_up_unless_a_checkpoint_is_there(tmp_path):
    from engine import unit_checkpoint_path

    unit = Assignment.of_unit(PARAMS, 4, tmp_path / "checkpoints")
    work = NodeWork(_Node(tmp_path, synced=False, units=[unit]))
    wait = work.next_work()
    assert isinstance(wait, Wait) and wait.state == "syncing"
    (tmp_path / "checkpoints").mkdir()
    unit_checkpoint_path(tmp_path / "checkpoints", PARAMS, 4).write_text("{}\n")
    assert work.next_work() is unit


def test_block_task_done_says_whether_the_leaf_agrees(tmp_path):
    good = _spot_check(0, 3)
    bad = BlockTask("spot-check", "w", 3, good.lo, good.hi, b"\x00" * 32, ())
    source = Source(tmp_path, units=(), tasks=(good, bad))
    s = ContributorSession(PARAMS, source)
    done = [e for e in _turns(s, 2) if isinstance(e, BlockTaskDone)]
    assert [d.agrees for d in done] == [True, False]
    assert [d.cid for d in done] == ["check-3", "check-3"]
    s.close()


def test_every_renewal_shows_the_checkpoints_progress(tmp_path):
    # The node's claim reads `done` from the unit's checkpoint (checkpoint_blocks_done);
    # a renewal comes after a batch was checkpointed, so each one shows more blocks
    # and extends the claim (PROTOCOL §8, "Claims").
    from engine import unit_checkpoint_path
    from engine.checkpoint import checkpoint_blocks_done

    class Renewing(Source):
        def __init__(self) -> None:
            super().__init__(tmp_path, renew_s=0.0)
            self.shown: list[int] = []

        def renew_claim(self, unit: int) -> None:
            super().renew_claim(unit)
            self.shown.append(checkpoint_blocks_done(unit_checkpoint_path(tmp_path, PARAMS, 0)))

    source = Renewing()
    s = ContributorSession(PARAMS, source, clock=iter(range(10**6)).__next__)
    for _ in range(BLOCKS + 2):
        _turns(s)
        if source.published:
            break
    assert source.published == [(0, _root(0))]
    assert source.shown == list(range(1, BLOCKS + 1))


def test_checkpoint_blocks_done_counts_whole_distinct_blocks(tmp_path):
    from engine import unit_checkpoint_path
    from engine.checkpoint import checkpoint_blocks_done

    path = unit_checkpoint_path(tmp_path, PARAMS, 0)
    assert checkpoint_blocks_done(path) == 0  # no file
    # The real checkpoint format, written by a real run.
    verify_range(PARAMS, *PARAMS.unit_range(0), backend="cpu", checkpoint=path)
    lines = path.read_bytes().split(b"\n")
    assert checkpoint_blocks_done(path) == BLOCKS == len(lines) - 2
    # A block written twice (a retried write after a full disk) counts once; a torn
    # last line does not count; a torn line ended by a later write neither.
    torn = [lines[0], lines[1], lines[1], lines[2][:9], lines[3], lines[4][:5]]
    path.write_bytes(b"\n".join(torn))
    assert checkpoint_blocks_done(path) == 2


def test_claims_are_renewed_within_the_longest_claim_peers_accept():
    from network.contributor.work import claim_renew_interval_s
    from network.wire import MAX_CLAIM_TTL

    assert claim_renew_interval_s(900) == 300
    assert claim_renew_interval_s(10 * MAX_CLAIM_TTL) == MAX_CLAIM_TTL / 3
    assert claim_renew_interval_s(1) == 5.0
