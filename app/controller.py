"""The app's core object on the GUI thread: settings, workers, actions, policy.

`AppController` owns the settings store, the work bridge, the engine and
network worker threads and the QActions the window and the tray share. It
sends commands to the workers only through its own signals (queued across
threads) and relays what they report. Nothing here blocks the GUI thread:
platform probes and account operations run as one-shot pool jobs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QThreadPool, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence

from app import autostart, theme
from app.app_settings import APP_SETTINGS
from app.eventlog import Entry, EventLog
from app.formatting import fmt_range
from app.messages import Message, message
from app.network_bridge import (
    NETWORK_SETTINGS,
    SOLO_TEXT,
    Accounts,
    BridgeStatus,
    CandidateUnit,
    HistoryRow,
    LeaderRow,
    NetworkSnapshot,
    StartFailure,
    WorkBridge,
    accounts_available,
    block_task_label,
    release_off_reason,
)
from app.ringbuffer import RateTracker
from app.stats import FLUSH_INTERVAL_S, STATS_FILE, StatsStore
from app.theme import icon, state_icon
from app.workers import EngineWorker, NetworkWorker, WorkerThread, run_job
from engine import Params, by_name, make_backend, policy
from engine.files import write_atomic
from engine.settings import ENGINE_SETTINGS, SETTINGS_FILE, SettingsStore, effective_cores

log = logging.getLogger(__name__)

APP_STATE_FILE = "app_state.json"
POLICY_INTERVAL_MS = 5000
SAMPLE_INTERVAL_MS = 500
SNOOZE_HOURS = (1, 3, 8)
# Published/acknowledged records in the event log: at most this many a minute
# (a node catching up acknowledges hundreds), then one line counting the rest.
NETWORK_NOTES_PER_MIN = 30
POLICY_KEYS = {
    "snooze_until",
    "schedule",
    "idle_only",
    "idle_seconds",
    "pause_on_battery",
    "pause_programs",
}


def _norm(program: str) -> str:
    """A program name as engine.policy compares them (case-blind, no .exe)."""
    name = program.strip().lower()
    return name[:-4] if name.endswith(".exe") else name


def all_settings() -> tuple:
    return ENGINE_SETTINGS + NETWORK_SETTINGS + APP_SETTINGS


class AppController(QObject):
    """Everything between the widgets and the workers.

    Args:
        data_dir: the profile directory (settings, keys, checkpoints, logs).
        params: a parameter set overriding the `params` setting (tests, demos).
        try_network: False keeps the app in solo mode.
        kdf_limits: key-derivation cost for new passphrases (tests use the minimum).
        probe: the platform probe (tests inject fixed situations).
        node_overrides: NodeConfig fields that win over the settings (hidden: tests and
            the screenshot demo use loopback, explicit peers and a `unit_limit`).

    Signals:
        state_changed(state, reason): the engine's state.
        message_shown(Message): a user-visible message (also in the event log).
        progress(Progress), unit_done(UnitDone), unit_started(Assignment).
        rate(backend, numbers_per_second, batch_seconds).
        network_status(BridgeStatus).
        history_changed(), leaderboard_changed(): a new snapshot changed them.
        block_task_done(BlockTaskDone): a spot-check or dispute confirmation finished.
        setting_changed(key, value): a stored setting changed (the wizard, a snooze,
            Preferences); pages show the new value.
        controls_changed(): pause/resume/snooze availability changed (the window's
            control bar follows it).
        network_started(StartFailure | None): the node's start returned (the
            embedded IPFS library installs its own signal handlers then).
    """

    state_changed = Signal(str, str)
    message_shown = Signal(object)
    progress = Signal(object)
    unit_done = Signal(object)
    unit_started = Signal(object)
    rate = Signal(str, float, float)
    network_status = Signal(object)
    history_changed = Signal()
    leaderboard_changed = Signal()
    block_task_started = Signal(object)
    block_task_done = Signal(object)
    sampled = Signal()
    setting_changed = Signal(str, object)
    controls_changed = Signal()
    candidates_changed = Signal()
    release_changed = Signal()
    status_text = Signal(str)
    network_started = Signal(object)

    # Commands to the engine worker (queued to its thread).
    _cmd_start = Signal()
    _cmd_pause = Signal()
    _cmd_resume = Signal()
    _cmd_cores = Signal(int)
    _cmd_share = Signal(float)
    _cmd_blocked = Signal(str)
    _cmd_gpu = Signal(bool, object)
    _cmd_net_start = Signal()
    _cmd_net_limit = Signal(int)

    def __init__(
        self,
        data_dir: Path,
        *,
        params: Params | None = None,
        try_network: bool = True,
        kdf_limits: Any = None,
        probe: Callable[[bool], policy.Situation] = policy.probe,
        policy_interval_ms: int = POLICY_INTERVAL_MS,
        node_overrides: dict[str, Any] | None = None,
        backend_factory: Callable[..., Any] = make_backend,
    ) -> None:
        super().__init__()
        self._backend_factory = backend_factory  # a test may hand in its own
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = SettingsStore(self.data_dir / SETTINGS_FILE, all_settings())
        self._params_override = params
        self.try_network = try_network
        self.node_overrides = dict(node_overrides or {})
        self.kdf_limits = kdf_limits
        self.events = EventLog()
        self.rates = RateTracker()
        # History that outlives a restart: the event log, the 24-hour graph, unit times.
        self.stats = StatsStore(self.data_dir / STATS_FILE)
        self._restore_history()
        self.events.added.connect(self._store_event)
        self.state = ("stopped", "")
        self.last_status: BridgeStatus | None = None
        self.last_snapshot: NetworkSnapshot | None = None
        self.block_tasks = 0
        # Units reported with a candidate (network state, or computed here solo).
        self.candidate_units: dict[int, CandidateUnit] = {}
        # The newest signed release the network announced, if newer than this program.
        self.release: Any = None
        self.bridge: WorkBridge | None = None
        self.engine: EngineWorker | None = None
        self._engine_thread: WorkerThread | None = None
        self.network: NetworkWorker | None = None
        self._network_thread: WorkerThread | None = None
        self._probe = probe
        self._situation: policy.Situation | None = None
        self._noted: set[str] = set()
        # One platform probe at a time; a result requested before a later refresh
        # (a setting changed meanwhile) is stale and is not applied.
        self._probe_job: Any = None
        self._probe_wanted = 0
        # Pause is the volunteer's choice and outlives a restart (app_state.json).
        self._user_paused = bool(self._app_state().get("paused"))
        # A program from `gpu_pause_programs` that runs now ("" when none): the GPU
        # rests while it runs.
        self.gpu_held_by = ""
        self._shut_down = False
        self._net_notes_window = 0.0
        self._net_notes = 0
        self._net_notes_dropped = 0
        for w in self.settings.warnings:
            self.show("settings_invalid", w)
        self.settings.subscribe(self._on_setting)

        self._policy_timer = QTimer(self)
        self._policy_timer.setInterval(policy_interval_ms)
        self._policy_timer.timeout.connect(self._poll_policy)
        self._snooze_timer = QTimer(self)  # ends a snooze on time even between probes
        self._snooze_timer.setSingleShot(True)
        self._snooze_timer.timeout.connect(self._reapply_policy)
        # The plots sample the held rates at 2 Hz whether or not a page shows them.
        self._sample_timer = QTimer(self)
        self._sample_timer.setInterval(SAMPLE_INTERVAL_MS)
        self._sample_timer.timeout.connect(self._sample)
        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(int(FLUSH_INTERVAL_S * 1000))
        self._stats_timer.timeout.connect(self.stats.flush)
        self._stats_timer.start()
        self._make_actions()

    def _restore_history(self) -> None:
        self.events.restore(
            [Entry(e.at, e.level, e.source, e.text) for e in self.stats.recent_events(1000)]
        )
        now_wall, now_mono = time.time(), time.monotonic()
        for backend in self.rates.backends:
            minutes = self.stats.rates_per_minute(backend, now_wall - 86400)
            # Wall-clock minutes onto the plot's monotonic axis (the minute's middle).
            self.rates.restore_coarse(
                backend, [(now_mono - (now_wall - (t + 30.0)), v) for t, v in minutes]
            )

    @Slot(object)
    def _store_event(self, e: Entry) -> None:
        self.stats.add_event(e.at, e.level, e.source, e.text)

    # -- profile ---------------------------------------------------------------------

    @property
    def params(self) -> Params:
        return self._params_override or by_name(self.settings["params"])

    def is_set_up(self) -> bool:
        """Whether the first-run wizard has completed for this profile."""
        return bool(self._app_state().get("setup_complete"))

    def _app_state(self) -> dict:
        try:
            doc = json.loads((self.data_dir / APP_STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def _write_app_state(self, **changes: Any) -> None:
        """Merge `changes` into app_state.json (atomic). Raises OSError when the disk refuses."""
        doc = {**self._app_state(), **changes, "version": 1}
        write_atomic(self.data_dir / APP_STATE_FILE, json.dumps(doc).encode("utf-8"))

    def mark_set_up(self) -> None:
        """Remember that the wizard completed. Raises OSError when the disk refuses."""
        self._write_app_state(setup_complete=True)

    @property
    def user_paused(self) -> bool:
        """Whether the volunteer paused computing (remembered across restarts)."""
        return self._user_paused

    def accounts(self) -> Accounts | None:
        """Account operations, or None when the network layer is not installed."""
        if not accounts_available():
            return None
        return Accounts(self.data_dir, self.kdf_limits)

    # -- messages ----------------------------------------------------------------------

    def show(self, code: str, detail: str = "", source: str = "app") -> Message:
        """Record a user-visible message (event log + Python logging) and announce it."""
        m = message(code, detail)
        self.events.add(m.severity, source, m.text)
        self.message_shown.emit(m)
        return m

    def note(self, text: str, source: str = "app", level: str = "info") -> None:
        self.events.add(level, source, text)

    def main_status(self, text: str, source: str = "app") -> None:
        """Confirm something the volunteer just did (status bar + event log)."""
        self.events.add("info", source, text)
        self.status_text.emit(text)

    def set_setting(self, key: str, value: Any, source: str = "app") -> bool:
        """Store one setting; a failed write becomes a message, never a traceback.

        Returns:
            False when the file could not be written (the old value stays).

        Raises:
            ValueError: the value does not fit the setting (the caller shows why).
        """
        try:
            self.settings.set(key, value)
        except OSError as exc:
            log.warning("setting %s not saved", key, exc_info=True)
            self.show("settings_not_saved", f"{key}: {exc.strerror or exc}", source)
            return False
        return True

    # -- actions (shared by the window and the tray) -------------------------------------

    def _make_actions(self) -> None:
        self.act_open = QAction(icon("hailstone"), "Open Hailstone", self)
        self.act_pause = QAction(state_icon("paused"), "Pause", self)
        self.act_resume = QAction(state_icon("computing"), "Resume", self)
        self.act_quit = QAction("Quit", self)
        self.act_quit.setShortcut(QKeySequence.StandardKey.Quit)  # Ctrl+Q in the window
        self.act_pause.triggered.connect(self.pause)
        self.act_resume.triggered.connect(self.resume)
        self.snooze_actions: list[QAction] = []
        for hours in SNOOZE_HOURS:
            a = QAction(f"for {hours} hour{'s' if hours > 1 else ''}", self)
            a.triggered.connect(lambda _checked=False, h=hours: self.snooze(h))
            self.snooze_actions.append(a)
        self.act_unsnooze = QAction("End snooze", self)
        self.act_unsnooze.triggered.connect(self.unsnooze)
        self._update_actions()

    def snoozed(self) -> bool:
        return float(self.settings["snooze_until"]) > time.time()

    def _update_actions(self) -> None:
        state = self.state[0]
        snoozed = self.snoozed()
        # Pause works before the engine starts too: it is remembered and applied at start.
        self.act_pause.setEnabled(not self._user_paused and not self._shut_down)
        # Resume ends a pause, a snooze (it is the obvious button for both) or an error.
        self.act_resume.setEnabled(self._user_paused or snoozed or state == "error")
        self.act_unsnooze.setEnabled(snoozed)
        self.controls_changed.emit()

    # -- engine lifecycle ------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._engine_thread is not None

    def start_engine(self) -> None:
        """Start the bridge and the worker threads, then computing (once)."""
        if self._engine_thread is not None:
            return
        s = self.settings
        self.bridge = WorkBridge(
            self.data_dir,
            self.params,
            s.values(),
            try_network=self.try_network,
            node_overrides=self.node_overrides,
        )
        if self.bridge.solo:
            self.show("network_solo", source="network")
            self.note(f"Solo mode because {self.bridge.solo_reason}.", "network")
        self.engine = EngineWorker(
            self.params,
            self.bridge,
            cores=effective_cores(s["cpu_cores"]),
            share=s["cpu_share"] / 100.0,
            gpu_enabled=s["gpu_enabled"] and not self.gpu_held_by,
            gpu_devices=s["gpu_devices"],
            backend_factory=self._backend_factory,
        )
        e = self.engine
        e.rate_sample.connect(self._on_rate)
        e.block_done.connect(self._on_progress)
        e.unit_started.connect(self._on_unit_started)
        e.unit_done.connect(self._on_unit_done)
        e.block_task_done.connect(self._on_block_task_done)
        e.block_task_started.connect(self.block_task_started)
        e.state_changed.connect(self._on_state)
        # Slots of this GUI-thread object, never lambdas: a lambda connected to a
        # worker's signal runs on the worker's thread.
        e.warning.connect(self._on_engine_message)
        e.error.connect(self._on_engine_message)
        self._cmd_start.connect(e.start)
        self._cmd_pause.connect(e.pause)
        self._cmd_resume.connect(e.resume)
        self._cmd_cores.connect(e.set_cores)
        self._cmd_share.connect(e.set_share)
        self._cmd_blocked.connect(e.set_blocked)
        self._cmd_gpu.connect(e.set_gpu)
        self._engine_thread = WorkerThread(e, "hailstone-engine")

        self.network = NetworkWorker(self.bridge)
        n = self.network
        n.started.connect(self._on_network_started)
        n.status.connect(self._on_network_status)
        n.snapshot.connect(self._on_snapshot)
        n.peers_changed.connect(self._on_peers)
        n.record_accepted.connect(self._on_accepted)
        n.record_rejected.connect(self._on_rejected)
        n.warning.connect(self._on_network_warning)
        n.events.connect(self._on_network_events)
        self._cmd_net_start.connect(self.network.start)
        self._cmd_net_limit.connect(self.network.set_bandwidth_limit)
        self._network_thread = WorkerThread(self.network, "hailstone-network")
        self._cmd_net_start.emit()

        self.note(f"Computing {self.params.name} units on this computer.", "engine")
        if self._user_paused:
            self._cmd_pause.emit()
        self._reapply_policy()
        self._cmd_start.emit()
        self.refresh_policy()
        self._policy_timer.start()
        self._sample_timer.start()

    @Slot()
    def _sample(self) -> None:
        self.rates.tick(time.monotonic())
        self.sampled.emit()

    def shutdown(self) -> None:
        """Stop every worker and wait for its thread (call before the app exits).

        A network start in progress is cancelled first, so quitting does not wait
        for the rest of it; a thread that does not stop in time is logged and kept
        referenced (workers.STUCK_THREADS), never destroyed while it runs.
        """
        self._shut_down = True
        self._policy_timer.stop()
        self._snooze_timer.stop()
        self._sample_timer.stop()
        self._stats_timer.stop()
        if self.network is not None:
            self.network.cancel()
        if self._engine_thread is not None:
            assert self.engine is not None
            if not self._engine_thread.stop(self.engine.stop):
                self.note("The engine did not stop in time.", "engine", "error")
            self._engine_thread = None
        if self._network_thread is not None:
            assert self.network is not None
            if not self._network_thread.stop(self.network.stop):
                self.note("The network node did not stop in time.", "network", "error")
            self._network_thread = None
        QThreadPool.globalInstance().waitForDone(10000)
        # The workers' last reports (the final batch's rate and progress) are still
        # queued for this object: deliver them, so the statistics count that batch.
        QCoreApplication.sendPostedEvents(self, QEvent.Type.MetaCall)
        self.stats.close()  # flushes; later additions stay in memory only

    # -- commands --------------------------------------------------------------------

    def _remember_pause(self, paused: bool) -> None:
        try:
            self._write_app_state(paused=paused)
        except OSError as exc:
            log.warning("pause state not saved", exc_info=True)
            self.show("settings_not_saved", f"paused: {exc.strerror or exc}")

    @Slot()
    def pause(self) -> None:
        """Stop computing until Resume, also across a restart."""
        self._user_paused = True
        self._cmd_pause.emit()
        self._remember_pause(True)
        self.note("Paused; press Resume to continue (this is remembered after a restart).")
        self._update_actions()

    @Slot()
    def resume(self) -> None:
        """End a pause and a snooze, and retry after an error."""
        if self.snoozed():
            self.unsnooze()
        was_paused = self._user_paused
        self._user_paused = False
        self._cmd_resume.emit()
        if was_paused:
            self._remember_pause(False)
        self.note("Resumed.")
        self._update_actions()

    def snooze(self, hours: float) -> None:
        """Pause for `hours`; the end time is a setting, so it survives a restart."""
        until = time.time() + hours * 3600
        if not self.set_setting("snooze_until", until):
            return
        self.note(
            f"Snoozed for {hours:g} h (until {time.strftime('%a %H:%M', time.localtime(until))})."
        )

    def unsnooze(self) -> None:
        if self.set_setting("snooze_until", 0.0):
            self.note("Snooze ended.")

    # -- policy ----------------------------------------------------------------------

    @Slot()
    def _poll_policy(self) -> None:
        # The periodic probe: skipped while one is still running (a slow platform).
        if self._probe_job is None:
            self.refresh_policy()

    @Slot()
    def refresh_policy(self) -> None:
        """Probe the platform off the GUI thread, then apply the rules.

        One probe runs at a time; asking again while one runs marks its result
        stale, and a fresh probe (with the settings of now) follows it.
        """
        if self._shut_down:
            return
        self._probe_wanted += 1
        if self._probe_job is not None:
            return
        seq = self._probe_wanted
        need_programs = bool(self.settings["pause_programs"] or self.settings["gpu_pause_programs"])
        self._probe_job = run_job(
            lambda: self._probe(need_programs),
            lambda situation: self._on_situation(seq, situation),
            lambda exc: self._on_probe_failed(seq, exc),
            owner=self,
        )

    def _on_situation(self, seq: int, situation: policy.Situation) -> None:
        self._probe_job = None
        if seq != self._probe_wanted:
            self.refresh_policy()  # settings changed while it ran: probe again
            return
        if not self._shut_down:
            self.apply_situation(situation)

    def _on_probe_failed(self, seq: int, exc: Exception) -> None:
        self._probe_job = None
        log.warning("platform probe failed: %s", exc)
        if seq != self._probe_wanted:
            self.refresh_policy()

    def apply_situation(
        self, situation: policy.Situation, *, probed: bool = True
    ) -> policy.Decision:
        """Apply the rules to a situation and tell the engine.

        Args:
            situation: what the probes saw.
            probed: False when re-applying an older probe's values (a setting or
                the snooze timer changed); only a fresh probe may say a rule
                cannot be checked here.
        """
        self._situation = situation
        values = self.settings.values()
        for note in policy.unsupported_notes(values, situation) if probed else ():
            if note not in self._noted:
                self._noted.add(note)
                self.note(note.capitalize() + ".")
        decision = policy.decide(values, situation)
        self._cmd_blocked.emit("" if decision.run else decision.reason)
        self._apply_gpu_programs()
        return decision

    # -- the GPU alone paused while chosen programs run (games) ----------------------

    def _send_gpu(self) -> None:
        enabled = bool(self.settings["gpu_enabled"]) and not self.gpu_held_by
        self._cmd_gpu.emit(enabled, self.settings["gpu_devices"])

    def _apply_gpu_programs(self) -> None:
        """Take the GPU away while a listed program runs; the CPU keeps computing."""
        situation = self._situation
        wanted = {_norm(p) for p in self.settings["gpu_pause_programs"] if p.strip()}
        running: list[str] = []
        if wanted and situation is not None and situation.programs is not None:
            running = sorted(wanted & {_norm(p) for p in situation.programs})
        holder = running[0] if running else ""
        if holder == self.gpu_held_by:
            return
        was = self.gpu_held_by
        self.gpu_held_by = holder
        if self.settings["gpu_enabled"]:
            self._send_gpu()
            if holder:
                self.note(f"GPU paused while {holder} runs; the CPU keeps computing.")
            elif was:
                self.note(f"{was} is no longer running: the GPU computes again.")

    def _reapply_policy(self) -> None:
        base = self._situation or policy.Situation(now=time.time())
        self.apply_situation(
            policy.Situation(time.time(), base.idle_seconds, base.on_battery, base.programs),
            probed=False,
        )
        snooze = float(self.settings["snooze_until"])
        if snooze > time.time():
            self._snooze_timer.start(int(min(snooze - time.time(), 86400) * 1000) + 50)
        self._update_actions()

    # -- settings --------------------------------------------------------------------

    def _on_setting(self, key: str, value: Any) -> None:
        setting = self.settings.settings[key]
        if key == "cpu_cores":
            self._cmd_cores.emit(effective_cores(value))
        elif key == "cpu_share":
            self._cmd_share.emit(value / 100.0)
        elif key in ("gpu_enabled", "gpu_devices"):
            self._send_gpu()
        elif key in POLICY_KEYS:
            self._reapply_policy()
            if key == "pause_programs" and self.running:
                self.refresh_policy()  # the last probe did not list programs
        elif key == "start_at_login":
            self.apply_start_at_login(bool(value))
        elif key == "theme":
            theme.apply_scheme(str(value))
        elif key == "bandwidth_limit_kib":
            self._cmd_net_limit.emit(int(value))
            limit = f"{int(value)} KiB/s each way" if value else "off"
            self.note(
                f"Bandwidth limit {limit}: Hailstone's own sending and fetching follow it "
                "now; the IPFS node's low-traffic configuration follows at its next start.",
                "preferences",
            )
        elif key == "gpu_pause_programs":
            self._apply_gpu_programs()
            if self.running:
                self.refresh_policy()  # the last probe may not have listed programs
        if setting.restart and self.running:
            self.note(f"{setting.title} takes effect after a restart.", level="info")
        self.setting_changed.emit(key, value)

    def autostart_params(self) -> str | None:
        """The --params a login start needs (a named set chosen for this run), or None."""
        name = self._params_override.name if self._params_override else None
        return name if name in ("dev", "production") else None

    def apply_start_at_login(self, enabled: bool, **paths: Any) -> bool:
        """Register or remove the login entry for this profile; False (and a message) on failure."""
        try:
            where = autostart.set_enabled(
                enabled, data_dir=self.data_dir, params=self.autostart_params(), **paths
            )
        except OSError as exc:
            log.warning("start at login not changed", exc_info=True)
            self.show("autostart_failed", exc.strerror or str(exc))
            return False
        self.note(f"Start at login {'on' if enabled else 'off'} ({where}).")
        return True

    # -- worker reports ---------------------------------------------------------------

    @Slot(str, float, float)
    def _on_rate(self, backend: str, rate: float, batch_s: float) -> None:
        self.rates.report(backend, rate, time.monotonic(), batch_s)
        self.stats.add_numbers(backend, round(rate * batch_s), batch_s, time.time())
        self.rate.emit(backend, rate, batch_s)

    @Slot(str, str)
    def _on_engine_message(self, code: str, detail: str) -> None:
        self.show(code, detail, "engine")

    @Slot(str)
    def _on_rejected(self, detail: str) -> None:
        self.note(f"Record rejected: {detail}.", "network", "warning")

    @Slot(str, str)
    def _on_network_warning(self, _code: str, detail: str) -> None:
        self.note(detail, "network", "warning")

    @Slot(object)
    def _on_progress(self, p: Any) -> None:
        if p.batch_s:
            self.stats.add_unit_time(self.params.name, p.unit, p.batch_s)
        self.progress.emit(p)

    @Slot(object)
    def _on_unit_started(self, a: Any) -> None:
        self.note(f"Unit {a.unit:,} started: {fmt_range(self.params, a.lo, a.hi)}.", "engine")
        self.unit_started.emit(a)

    @Slot(object)
    def _on_unit_done(self, d: Any) -> None:
        self.stats.unit_finished(self.params.name, d.unit, d.numbers, time.time())
        where = f"published as {d.cid}" if d.cid else "stored locally"
        # Every run that worked on the unit counts, not only the last one.
        seconds = max(d.seconds, self.stats.unit_seconds(self.params.name, d.unit))
        self.note(
            f"Unit {d.unit} done in {seconds:.1f} s on {d.backend}; root {d.root_hex[:16]}…, {where}.",
            "engine",
        )
        self.unit_done.emit(d)
        if d.candidates and self.bridge is not None and self.bridge.solo:
            self._add_candidates([CandidateUnit(d.unit, d.candidates, (), ("this computer",))])

    @Slot(str, str)
    def _on_state(self, state: str, reason: str) -> None:
        old = self.state
        self.state = (state, reason)
        if state == "waiting" and old != self.state:
            self.note(f"Waiting: {reason}.", "engine")
        self._update_actions()
        self.state_changed.emit(state, reason)

    @Slot(object)
    def _on_block_task_done(self, d: Any) -> None:
        self.block_tasks += 1
        if d.purpose == "confirm":
            verdict = "the disputed block was wrong" if not d.agrees else "the work stands"
            what = f"Dispute on block {d.block} of {d.work_cid[:16]}… checked: {verdict}"
        else:
            verdict = "matches" if d.agrees else "does NOT match; a dispute was published"
            kind = block_task_label(d.purpose).capitalize()
            what = f"{kind} of block {d.block} of {d.work_cid[:16]}…: {verdict}"
        self.note(f"{what} ({d.seconds:.2f} s on {d.backend}).", "network")
        self.block_task_done.emit(d)

    @Slot(object)
    def _on_network_started(self, failure: StartFailure | None) -> None:
        self.network_started.emit(failure)
        if failure is None:
            self.note("The network node started.", "network")
            return
        # The node could not start: say why, and that computing goes on solo.
        self.show(failure.code, failure.detail, "network")
        self.show("network_solo", source="network")
        if self.bridge is not None:
            self.note(f"Solo mode because {self.bridge.solo_reason}.", "network", "warning")

    @Slot(object)
    def _on_network_status(self, status: BridgeStatus) -> None:
        self.last_status = status
        self.network_status.emit(status)

    @Slot(object)
    def _on_snapshot(self, snap: NetworkSnapshot) -> None:
        old = self.last_snapshot
        self.last_snapshot = snap
        self._add_candidates(snap.candidates)
        if snap.release != self.release:
            self._new_release(snap.release)
        if old is not None:
            self._notices(old.history, snap.history)
        if old is None or old.history != snap.history:
            self.history_changed.emit()
        if old is None or old.leaderboard != snap.leaderboard:
            self.leaderboard_changed.emit()

    def _notices(self, before: Any, after: Any) -> None:
        """Say what changed for my units: verified (credit), disputed, disagreeing."""
        was = {r.unit: r.status for r in before}
        verified = []
        for r in after:
            old = was.get(r.unit)
            if old == r.status or old is None and r.status not in ("verified", "disputed"):
                continue
            if r.status == "verified":
                verified.append(r)
            elif r.status == "disputed":
                self.show("dispute_against_you", f"{r.unit:,}", "notice")
            elif r.status == "conflicting":
                self.note(
                    f"Unit {r.unit:,}: another volunteer reported a different root; a further "
                    "result will decide.",
                    "notice",
                    "warning",
                )
        if len(verified) > 3:
            credited = sum(1 for r in verified if r.credited)
            self.main_status(
                f"{len(verified)} of your units were verified; {credited} credited to you.",
                "notice",
            )
            return
        for r in verified:
            others = [n for n in r.agreeing if n != r.me]
            who = ", ".join(others) or "another volunteer"
            earned = "credited to you" if r.credited else "not credited (two results came first)"
            self.main_status(
                f"Unit {r.unit:,} verified: {who} got the same root; {earned}.", "notice"
            )

    def _new_release(self, notice: Any) -> None:
        """A newer Hailstone was announced: say so once per version (event log
        notice, status bar), remembered across restarts; About shows it always."""
        self.release = notice
        if notice is not None and self._app_state().get("release_noticed") != notice.version:
            try:
                self._write_app_state(release_noticed=notice.version)
            except OSError as exc:  # said again next start, which is no harm
                log.warning("cannot remember the release notice: %s", exc)
            self.show("new_version", notice.text, "notice")
        self.release_changed.emit()

    def release_off_reason(self) -> str:
        """Why no new-version notice can appear ("" when release keys are set)."""
        return release_off_reason(self.settings.values())

    def _add_candidates(self, found: Any) -> None:
        """Raise every newly seen candidate unit: a message (event log, status bar,
        notification) and the dashboard's banner."""
        new = [c for c in found if c.unit not in self.candidate_units]
        for c in new:
            self.candidate_units[c.unit] = c
            numbers = ", ".join(str(n) for n in c.numbers[:3]) or "see the unit's record"
            by = f", reported by {', '.join(c.reported_by)}" if c.reported_by else ""
            self.show("candidate", f"{c.unit} (n = {numbers}{by})", "notice")
        if new:
            self.candidates_changed.emit()

    @Slot(int)
    def _on_peers(self, peers: int) -> None:
        if self.bridge is not None and not self.bridge.solo:
            self.note(f"Connected peers: {peers}.", "network")

    @Slot(str, str)
    def _on_accepted(self, text: str, cid: str) -> None:
        # The node names the peer a record came from, or "fetch" for one fetched
        # from a peer's published head.
        text = text.replace(" from fetch", " fetched from a peer's head")
        self.note(f"Record accepted: {text} ({cid[:20]}…).", "network")

    @Slot(list)
    def _on_network_events(self, events: list, now: float | None = None) -> None:
        """Published and acknowledged records go to the log, NETWORK_NOTES_PER_MIN at most."""
        now = time.monotonic() if now is None else now
        if now - self._net_notes_window >= 60.0:
            if self._net_notes_dropped:
                self.note(
                    f"{self._net_notes_dropped} more records were published or acknowledged "
                    "(not listed one by one).",
                    "network",
                )
            self._net_notes_window, self._net_notes, self._net_notes_dropped = now, 0, 0
        for ev in events:
            if ev.kind not in ("published", "acknowledged"):
                continue
            if self._net_notes >= NETWORK_NOTES_PER_MIN:
                self._net_notes_dropped += 1
                continue
            self._net_notes += 1
            if ev.kind == "published":
                self.note(f"Published {ev.text} as {ev.cid}.", "network")
            else:
                self.note(ev.text.capitalize() + ".", "network")

    # -- what the pages read (never a node call on the GUI thread) ------------------

    def history(self) -> list[HistoryRow]:
        """My units, newest first: solo from the local file, else the last snapshot."""
        if self.bridge is None:
            return []
        if self.bridge.solo:
            rows = self.bridge.my_units()  # the local JSON file, no node involved
        else:
            rows = list(self.last_snapshot.history) if self.last_snapshot else []
        # The bridge knows the last run's time; the statistics know every run's.
        spent = self.stats.all_unit_seconds(self.params.name)
        return [
            dataclasses.replace(r, seconds=max(r.seconds, spent.get(r.unit, 0.0))) for r in rows
        ]

    def leaderboard(self) -> list[LeaderRow]:
        """The network's leaderboard from the last snapshot (empty solo)."""
        return list(self.last_snapshot.leaderboard) if self.last_snapshot else []

    def name_owners(self) -> dict[str, bytes]:
        """Username owners the running node knows (empty before a snapshot)."""
        return dict(self.last_snapshot.name_owners) if self.last_snapshot else {}

    def network_text(self) -> str:
        return self.last_status.text if self.last_status else SOLO_TEXT
