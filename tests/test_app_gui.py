"""The desktop app under pytest-qt, offscreen, computing for real on tiny parameters."""

from __future__ import annotations

import json
import time

import pytest
from PySide6.QtCore import QThreadPool, QTimer

from app.application import HailstoneApp
from app.controller import AppController
from app.workers import LIVE_THREADS
from engine import Params
from engine.policy import Situation

# 64 blocks of 2^16 per unit: a unit takes well under a second on one core.
TINY = Params.custom(name="tiny", unit_bits=22, block_bits=16, sieve_k=16)
# Bigger blocks for tests that need the engine busy for a while.
BUSY = Params.custom(name="busy", unit_bits=30, block_bits=21, sieve_k=16)
PASS = "correct horse battery staple"


def _calm(_programs: bool = False) -> Situation:
    """A fixed platform situation: on mains, idle, nothing running."""
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


def _limits():
    try:
        from network.keystore import MIN
    except ImportError:
        return None
    return MIN


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Fail a test that leaves a worker QThread or a pool job running."""
    yield
    running = [t.thread.objectName() for t in list(LIVE_THREADS) if t.thread.isRunning()]
    QThreadPool.globalInstance().waitForDone(10000)
    assert not running, f"threads left running: {running}"
    assert QThreadPool.globalInstance().activeThreadCount() == 0


@pytest.fixture
def make_ctl(tmp_path):
    made = []

    def make(params=TINY, **kw):
        kw.setdefault("probe", _calm)
        ctl = AppController(
            tmp_path / "profile", params=params, try_network=False, kdf_limits=_limits(), **kw
        )
        made.append(ctl)
        return ctl

    yield make
    for ctl in made:
        ctl.shutdown()


def test_wizard_creates_profile_and_starts_computing(qtbot, tmp_path):
    data = tmp_path / "profile"
    hs = HailstoneApp(data, params=TINY, try_network=False, kdf_limits=_limits(), probe=_calm)
    qtbot.addWidget(hs.window)
    try:
        hs.launch()
        wiz = hs.wizard
        assert wiz is not None and wiz.isVisible()
        page = wiz.account
        if page.accounts is not None:
            page.username.setText("x")  # too short: the page refuses it
            assert not page.isComplete() and "at least" in page.username_note.text()
            page.username.setText("Test-User")
            page.passphrase.setText(PASS)
            page.passphrase2.setText(PASS + "!")
            assert not page.isComplete()
            page.passphrase2.setText(PASS)
            assert page.isComplete()
        wiz.next()
        qtbot.waitUntil(lambda: wiz.currentPage() is wiz.compute, timeout=20000)
        wiz.compute.cores.setValue(1)
        wiz.compute.gpu.setChecked(False)
        wiz.next()
        assert wiz.currentPage() is wiz.network and wiz.network.isComplete()
        wiz.next()
        assert "tiny" in wiz.finish.summary.text()
        with qtbot.waitSignal(hs.ctl.unit_done, timeout=30000) as blocker:
            wiz.accept()
        assert blocker.args[0].unit == 0
        assert hs.ctl.is_set_up() and hs.window.isVisible()
        assert json.loads((data / "settings.json").read_text())["cpu_cores"] == 1
        if page.accounts is not None:
            info = json.loads((data / "profile.json").read_text())
            assert info["username"] == "Test-User"
        qtbot.waitUntil(
            lambda: json.loads((data / "solo_units.json").read_text())["next_unit"] >= 1
        )
        hist = hs.window.pages["History"]
        hs.window.show_page("History")
        # (newest first: on a fast machine unit 1 may be done too by now)
        units = [hist.table.item(r, 0).text() for r in range(hist.table.rowCount())]
        assert "0" in units and units == sorted(units, key=int, reverse=True)
    finally:
        hs.shutdown()
    # A later launch skips the wizard and computes the next unit.
    hs2 = HailstoneApp(data, params=TINY, try_network=False, kdf_limits=_limits(), probe=_calm)
    qtbot.addWidget(hs2.window)
    try:
        with qtbot.waitSignal(hs2.ctl.unit_started, timeout=20000) as started:
            hs2.launch()
        assert hs2.wizard is None and started.args[0].unit >= 1
    finally:
        hs2.shutdown()


def test_event_loop_keeps_answering_while_computing(qtbot, make_ctl):
    ctl = make_ctl(BUSY)
    ctl.settings.set("cpu_cores", 1)
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    blocks = []
    ctl.progress.connect(lambda p: blocks.append(p.blocks_done))
    with qtbot.waitSignal(
        ctl.state_changed, timeout=20000, check_params_cb=lambda s, _r: s == "computing"
    ):
        ctl.start_engine()
    timer.start()
    start_blocks = len(blocks)
    qtbot.waitUntil(lambda: len(blocks) - start_blocks >= 3 and len(ticks) >= 30, timeout=30000)
    timer.stop()
    # The GUI thread's 10 ms timer kept firing while the engine worked through batches:
    # no gap near a batch's length (a blocked GUI thread shows up as one long gap).
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert max(gaps) < 0.25, f"the GUI thread stalled for {max(gaps):.3f} s"
    assert ctl.state[0] == "computing"


def test_pause_stops_within_one_batch_and_resume_continues(qtbot, make_ctl):
    ctl = make_ctl(BUSY)
    ctl.settings.set("cpu_cores", 1)
    batches = []
    ctl.start_engine()
    ctl.engine.batch_started.connect(lambda: batches.append(time.monotonic()))
    qtbot.waitUntil(lambda: len(batches) >= 2, timeout=30000)
    with qtbot.waitSignal(
        ctl.state_changed, timeout=20000, check_params_cb=lambda s, _r: s == "paused"
    ):
        before = len(batches)
        ctl.act_pause.trigger()
    assert len(batches) - before <= 1  # at most the batch already running
    settled = len(batches)
    qtbot.wait(400)
    assert len(batches) == settled
    assert not ctl.act_pause.isEnabled() and ctl.act_resume.isEnabled()
    with qtbot.waitSignal(ctl.engine.batch_started, timeout=20000):
        ctl.act_resume.trigger()


def test_preference_change_reaches_engine_live_and_persists(qtbot, make_ctl):
    from app.preferences import PreferencesPage

    ctl = make_ctl(BUSY)
    ctl.settings.set("cpu_cores", 1)
    page = PreferencesPage(ctl)
    qtbot.addWidget(page)
    ctl.start_engine()
    qtbot.waitUntil(lambda: ctl.state[0] == "computing", timeout=20000)
    page.editors["cpu_cores"].setValue(2)
    page.editors["cpu_share"].setValue(50)
    qtbot.waitUntil(lambda: ctl.engine.batch_cores == 2 and ctl.engine.share == 0.5, timeout=20000)
    saved = json.loads((ctl.data_dir / "settings.json").read_text())
    assert saved["cpu_cores"] == 2 and saved["cpu_share"] == 50
    # A bad value is refused next to its field, not stored.
    assert not page.apply("schedule", ["sometimes"])
    assert (
        page.errors["schedule"].isVisibleTo(page)
        and "time window" in page.errors["schedule"].text()
    )
    assert ctl.settings["schedule"] == ()
    # A schedule that excludes now makes the engine wait, live.
    now = time.localtime()
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[(now.tm_wday + 3) % 7]
    with qtbot.waitSignal(
        ctl.state_changed, timeout=20000, check_params_cb=lambda s, _r: s == "waiting"
    ):
        assert page.apply("schedule", [f"{day} 10:00-11:00"])


def test_tray_snooze_survives_restart(qtbot, make_ctl, tmp_path):
    from app.mainwindow import MainWindow

    ctl = make_ctl()
    win = MainWindow(ctl)
    qtbot.addWidget(win)
    menu_actions = [a.text() for a in win.tray.menu.actions()]
    assert menu_actions[0] == "Open Hailstone" and "Quit" in menu_actions
    assert win.tray.snooze_menu.actions()[0] is ctl.snooze_actions[0]
    ctl.start_engine()
    with qtbot.waitSignal(
        ctl.state_changed,
        timeout=20000,
        check_params_cb=lambda s, r: s == "waiting" and "snoozed" in r,
    ):
        ctl.snooze_actions[1].trigger()  # 3 hours
    until = ctl.settings["snooze_until"]
    assert 3 * 3600 - 60 < until - time.time() <= 3 * 3600
    assert "snoozed" in win.tray.tooltip()
    ctl.shutdown()
    again = make_ctl()
    assert again.settings["snooze_until"] == until
    again.start_engine()
    qtbot.waitUntil(lambda: again.state[0] == "waiting", timeout=20000)
    with qtbot.waitSignal(
        again.state_changed, timeout=20000, check_params_cb=lambda s, _r: s == "computing"
    ):
        again.act_unsnooze.trigger()
    # Closing the window with no tray does not hide it into nothing.
    if not win.tray.available:
        win.show()
        win.close()
        assert not win.isVisible()


def test_no_gpu_falls_back_to_cpu_with_a_message(qtbot, make_ctl):
    from app.wizard import probe_gpu

    if probe_gpu()[0]:
        pytest.skip("this machine has a usable GPU")
    ctl = make_ctl()
    ctl.settings.set("gpu_enabled", True)
    shown = []
    ctl.message_shown.connect(shown.append)
    with qtbot.waitSignal(ctl.rate, timeout=20000, check_params_cb=lambda b, _r, _s: b == "cpu"):
        ctl.start_engine()
    assert any(m.code == "no_gpu" and "CPU" in m.text for m in shown)
    assert any("CPU instead" in e.text for e in ctl.events.entries)


def test_unreachable_kubo_api_shows_message(qtbot, make_ctl):
    import socket

    from app.wizard import NetworkPage

    ctl = make_ctl()
    page = NetworkPage(ctl)
    qtbot.addWidget(page)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page.rpc.setChecked(True)
    page.addr.setText(f"/ip4/127.0.0.1/tcp/{port}")
    assert not page.isComplete()
    with qtbot.waitSignal(ctl.message_shown, timeout=10000) as got:
        page.test()
    assert got.args[0].code == "ipfs_unreachable" and str(port) in got.args[0].text
    qtbot.waitUntil(lambda: page._job is None)
    assert not page.isComplete() and "cannot be reached" in page.result.text()


def test_wrong_passphrase_and_disk_full_messages(qtbot, make_ctl, tmp_path):
    import errno

    from app.pages import AccountPage, EventLogPage

    ctl = make_ctl()
    log_page = EventLogPage(ctl)
    qtbot.addWidget(log_page)
    acc = ctl.accounts()
    if acc is not None:
        acc.create("alice", PASS)
        page = AccountPage(ctl)
        qtbot.addWidget(page)
        assert "alice" in page.info_label.text() and page.nodes.rowCount() == 1
        with qtbot.waitSignal(ctl.message_shown, timeout=20000) as got:
            page.export_to(tmp_path / "out.key", "not the passphrase")
        assert got.args[0].code == "wrong_passphrase"
        qtbot.waitUntil(lambda: not page.busy)
        assert not (tmp_path / "out.key").exists()
        page.export_to(tmp_path / "out.key", PASS)
        qtbot.waitUntil(lambda: not page.busy, timeout=20000)
        assert (tmp_path / "out.key").exists()
    from app.messages import classify_exception

    code, detail = classify_exception(
        OSError(errno.ENOSPC, "No space left on device", str(ctl.data_dir))
    )
    m = ctl.show(code, detail)
    assert m.code == "disk_full" and "full" in m.text
    # Every shown message is in the event log, and the page filters and searches it.
    log_page.filter.setCurrentIndex(2)  # errors only
    assert any("full" in t for t in log_page.visible_texts())
    log_page.filter.setCurrentIndex(0)
    log_page.search.setText("full")
    found = log_page.visible_texts()
    assert found and all("full" in t.lower() for t in found)


def test_single_instance_raises_first_window(qtbot, tmp_path):
    from app.single_instance import SingleInstance, ask_running_instance

    first = SingleInstance(tmp_path)
    assert first.listen()
    try:
        with qtbot.waitSignal(first.raise_requested, timeout=5000):
            assert ask_running_instance(tmp_path)
    finally:
        first.close()
    assert not ask_running_instance(tmp_path / "other", timeout_ms=200)


# ---- review fixes ---------------------------------------------------------------------


def test_second_launch_on_a_profile_raises_the_first_and_starts_nothing(qtbot, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from app.single_instance import SingleInstance, claim_profile

    data = tmp_path / "profile"
    data.mkdir()
    first = claim_profile(data)
    assert first is not None
    try:
        # A second server on the same name must not take the live one's socket.
        intruder = SingleInstance(data)
        assert not intruder.listen()
        intruder.close()
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        with qtbot.waitSignal(first.raise_requested, timeout=60000):
            proc = subprocess.Popen(
                [sys.executable, str(root / "main.py"), "gui", "--data-dir", str(data)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                cwd=root,
            )
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "already running" in out
        # The second copy opened no settings, no units, no engine of its own.
        assert not (data / "settings.json").exists() and not (data / "solo_units.json").exists()
    finally:
        first.close()
    # Once the first copy is gone, the profile can be claimed again.
    again = claim_profile(data, wait_ms=500)
    assert again is not None
    again.close()


def test_second_launch_during_the_wizard_raises_the_wizard(qtbot, tmp_path):
    hs = HailstoneApp(
        tmp_path / "profile", params=TINY, try_network=False, kdf_limits=_limits(), probe=_calm
    )
    qtbot.addWidget(hs.window)
    try:
        hs.launch()
        assert hs.wizard is not None
        hs.wizard.hide()
        hs.bring_to_front()
        assert hs.wizard.isVisible() and not hs.window.isVisible()
    finally:
        hs.shutdown()


def test_worker_reports_are_handled_on_the_gui_thread(qtbot, make_ctl):
    import threading

    from app.network_bridge import BridgeStatus  # noqa: F401 - the bridge is importable

    ctl = make_ctl()
    ctl.start_engine()
    gui = threading.get_ident()
    seen: list[tuple[str, int]] = []
    ctl.events.added.connect(lambda e: seen.append((e.text, threading.get_ident())))

    def from_worker_threads() -> None:
        # A worker's signals are emitted off the GUI thread, as in the real app.
        ctl.engine.warning.emit("no_gpu", "test device")
        ctl.network.record_rejected.emit("bad signature")
        ctl.network.warning.emit("network_warning", "poll hiccup")

    t = threading.Thread(target=from_worker_threads)
    t.start()
    t.join(10)
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=10000)
    texts = " ".join(text for text, _ in seen)
    assert "test device" in texts and "bad signature" in texts and "poll hiccup" in texts
    assert all(ident == gui for _, ident in seen)


def test_job_callbacks_run_on_the_gui_thread(qtbot):
    import threading

    from app.workers import active_jobs, run_job

    where: list[int] = []
    run_job(lambda: 1, lambda _r: where.append(threading.get_ident()), lambda _e: None)
    run_job(lambda: 1 / 0, lambda _r: None, lambda _e: where.append(threading.get_ident()))
    qtbot.waitUntil(lambda: len(where) == 2, timeout=10000)
    assert where == [threading.get_ident()] * 2
    assert active_jobs() == 0


def test_status_bar_message_outlives_network_updates(qtbot, make_ctl):
    from app.mainwindow import MainWindow
    from app.network_bridge import BridgeStatus

    ctl = make_ctl()
    win = MainWindow(ctl, tray_available=lambda: False)
    qtbot.addWidget(win)
    m = ctl.show("no_gpu", "test")
    for i in range(3):  # the network worker reports every second
        ctl.network_status.emit(BridgeStatus(connected=True, text=f"Network: {i} peers"))
    assert win.message_label.text() == m.text
    assert win.network_label.text() == "Network: 2 peers"


def _refuse_writes(monkeypatch):
    import errno

    import engine.settings

    def full(path, _data, mode=0o644):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(engine.settings, "write_atomic", full)


def test_failed_settings_write_is_a_message_and_memory_stays(qtbot, make_ctl, monkeypatch):
    from app.preferences import PreferencesPage

    ctl = make_ctl()
    page = PreferencesPage(ctl)
    qtbot.addWidget(page)
    assert page.apply("cpu_share", 80)
    heard = []
    ctl.settings.subscribe(lambda k, v: heard.append(k))
    shown = []
    ctl.message_shown.connect(shown.append)
    _refuse_writes(monkeypatch)
    with pytest.raises(OSError):
        ctl.settings.set("cpu_share", 50)
    assert ctl.settings["cpu_share"] == 80 and heard == []  # memory and file agree
    assert not page.apply("cpu_share", 50)
    assert page.editors["cpu_share"].value() == 80  # the value still in effect
    assert page.errors["cpu_share"].isVisibleTo(page)
    ctl.snooze(1)  # the tray's snooze: a message, not a traceback
    assert ctl.settings["snooze_until"] == 0.0
    assert [m.code for m in shown] == ["settings_not_saved"] * 2
    assert "disk space" in shown[0].text
    assert json.loads((ctl.data_dir / "settings.json").read_text()) == {"cpu_share": 80}


def test_excepthook_logs_the_traceback_and_shows_one_sentence(qtbot, make_ctl, caplog):
    from app.application import make_excepthook

    ctl = make_ctl()
    shown = []
    ctl.message_shown.connect(shown.append)
    hook = make_excepthook(ctl)
    try:
        raise RuntimeError("slot broke")
    except RuntimeError as exc:
        with caplog.at_level("ERROR"):
            hook(type(exc), exc, exc.__traceback__)
    assert shown[0].code == "unexpected_error" and "Traceback" not in shown[0].text
    assert "RuntimeError: slot broke" in shown[0].text
    assert "Traceback" in caplog.text and "slot broke" in caplog.text


def test_preferences_follow_the_store(qtbot, make_ctl):
    from app.preferences import PreferencesPage

    ctl = make_ctl()
    page = PreferencesPage(ctl)
    qtbot.addWidget(page)
    heard = []
    ctl.settings.subscribe(lambda k, v: heard.append(k))
    # As the wizard or a snooze does after the window was built.
    ctl.settings.set("cpu_cores", 1)
    ctl.settings.set("schedule", ["Mon-Fri 18:00-08:00", "Sat 00:00-24:00"])
    ctl.settings.set("idle_only", True)
    assert page.editors["cpu_cores"].value() == 1
    assert page.editors["schedule"].text() == "Mon-Fri 18:00-08:00; Sat 00:00-24:00"
    assert page.editors["idle_only"].isChecked()
    assert heard == ["cpu_cores", "schedule", "idle_only"]  # showing them set nothing again


def test_one_policy_probe_at_a_time_and_stale_results_are_dropped(qtbot, make_ctl):
    import threading

    from app.workers import active_jobs

    gate = threading.Event()
    calls: list[bool] = []

    def slow(programs: bool) -> Situation:
        calls.append(programs)
        gate.wait(10)
        return Situation(
            now=time.time(),
            idle_seconds=1e6,
            on_battery=False,
            programs=frozenset({"bash"}) if programs else None,
        )

    ctl = make_ctl(probe=slow, policy_interval_ms=20)
    ctl.start_engine()
    qtbot.wait(200)  # ten timer turns while the first probe hangs
    assert calls == [False]
    ctl.settings.set("pause_programs", ["blender"])  # asks for a probe with programs
    assert calls == [False]
    gate.set()
    qtbot.waitUntil(lambda: len(calls) >= 2 and ctl._situation is not None, timeout=10000)
    assert calls[1] is True and ctl._situation.programs == frozenset({"bash"})
    # The first (stale) probe listed no programs; its result was never applied.
    assert not any("cannot be listed" in e.text for e in ctl.events.entries)
    ctl.shutdown()
    qtbot.waitUntil(lambda: active_jobs() == 0, timeout=10000)


def test_a_new_block_reason_reaches_the_dashboard(qtbot, make_ctl):
    ctl = make_ctl()
    ctl.start_engine()
    with qtbot.waitSignal(
        ctl.state_changed, timeout=20000, check_params_cb=lambda s, r: r == "on battery"
    ):
        ctl.apply_situation(Situation(now=time.time(), on_battery=True))
    with qtbot.waitSignal(
        ctl.state_changed, timeout=20000, check_params_cb=lambda s, r: r.startswith("snoozed")
    ):
        ctl.snooze(1)


def test_snooze_ends_on_its_timer(qtbot, make_ctl):
    ctl = make_ctl()
    ctl.start_engine()
    with qtbot.waitSignal(
        ctl.state_changed, timeout=20000, check_params_cb=lambda s, r: s == "waiting"
    ):
        ctl.settings.set("snooze_until", time.time() + 0.5)
    with qtbot.waitSignal(
        ctl.state_changed, timeout=10000, check_params_cb=lambda s, _r: s == "computing"
    ):
        pass
    assert not ctl.act_unsnooze.isEnabled()


def test_tray_appears_later_closes_to_tray_and_goes_away(qtbot, make_ctl):
    from PySide6.QtWidgets import QApplication

    from app.mainwindow import MainWindow

    ctl = make_ctl()
    tray_now = [False]
    win = MainWindow(ctl, tray_available=lambda: tray_now[0])
    qtbot.addWidget(win)
    assert not win.tray.available and QApplication.instance().quitOnLastWindowClosed()
    tray_now[0] = True
    win.tray.check()  # the timer's re-check
    assert win.tray.available and not QApplication.instance().quitOnLastWindowClosed()
    win.show()
    win.close()  # with a tray: hidden, still running
    assert not win.isVisible() and not win.quitting
    assert any("in the background" in e.text for e in ctl.events.entries)
    ctl.act_open.trigger()
    assert win.isVisible()
    tray_now[0] = False
    win.tray.check()
    assert not win.tray.available and QApplication.instance().quitOnLastWindowClosed()
    win.tray.hide()


def test_quit_action_stops_everything(qtbot, tmp_path):
    data = tmp_path / "profile"
    hs = HailstoneApp(data, params=TINY, try_network=False, kdf_limits=_limits(), probe=_calm)
    qtbot.addWidget(hs.window)
    hs.ctl.mark_set_up()
    with qtbot.waitSignal(hs.ctl.unit_started, timeout=20000):
        hs.launch()
    assert hs.window.isVisible() and hs.ctl.running
    hs.ctl.act_quit.trigger()
    assert not hs.window.isVisible() and not hs.ctl.running
    assert all(not t.thread.isRunning() for t in list(LIVE_THREADS))


def test_network_events_reach_the_log_throttled(qtbot, make_ctl):
    from app.controller import NETWORK_NOTES_PER_MIN
    from app.network_bridge import NetEvent

    ctl = make_ctl()
    evs = [NetEvent("published", f"work for unit {i}", f"bafy{i}") for i in range(40)]
    evs.append(NetEvent("accepted", "ignored here", "x"))
    ctl._on_network_events(evs, now=1000.0)
    logged = [e.text for e in ctl.events.entries if e.source == "network"]
    assert (
        len(logged) == NETWORK_NOTES_PER_MIN and logged[0] == "Published work for unit 0 as bafy0."
    )
    ctl._on_network_events([], now=1061.0)
    assert ctl.events.entries[-1].text.startswith(f"{40 - NETWORK_NOTES_PER_MIN} more records")


def test_start_at_login_failure_has_its_own_message(qtbot, make_ctl, tmp_path):
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the .desktop entry is Linux-only")
    ctl = make_ctl()
    shown = []
    ctl.message_shown.connect(shown.append)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    assert not ctl.apply_start_at_login(True, config_home=blocker)
    assert shown[0].code == "autostart_failed" and "Start at login" in shown[0].text
    assert ctl.apply_start_at_login(True, config_home=tmp_path / "cfg")
    text = (tmp_path / "cfg" / "autostart" / "hailstone.desktop").read_text()
    assert str(ctl.data_dir.resolve()) in text and "--params" not in text  # a custom set


def test_event_log_table_is_bounded(qtbot, make_ctl, monkeypatch):
    import app.pages
    from app.pages import EventLogPage

    monkeypatch.setattr(app.pages, "MAX_ENTRIES", 10)
    ctl = make_ctl()
    page = EventLogPage(ctl)
    qtbot.addWidget(page)
    for i in range(25):
        ctl.note(f"entry {i}")
    assert page.table.rowCount() == 10
    assert page.visible_texts()[-1] == "entry 24" and page.visible_texts()[0] == "entry 15"


def test_a_lost_node_secret_is_replaced_with_the_passphrase(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from network.identity import Profile
    from network.keystore import MIN

    data = tmp_path / "profile"
    profile = Profile(data)
    profile.create("keeper", PASS, limits=MIN)
    old = bytes(profile.node_key().verify_key)
    (data / "node.secret").unlink()  # lost: the node key cannot be opened any more
    asked = []
    monkeypatch.setattr(
        QInputDialog, "getText", staticmethod(lambda *a, **k: (asked.append(a[1]) or PASS, True))
    )
    hs = HailstoneApp(data, params=TINY, try_network=False, kdf_limits=MIN, probe=_calm)
    qtbot.addWidget(hs.window)
    try:
        hs.ctl.mark_set_up()
        with qtbot.waitSignal(hs.ctl.unit_done, timeout=60000):
            hs.launch()
        assert asked == ["Unlock Hailstone"]
        fresh = bytes(profile.node_key().verify_key)  # opens again, and it is a new key
        assert fresh != old
        dels = profile.delegations()
        assert any(d.node == old and d.revoked for d in dels)
        assert any(d.node == fresh and not d.revoked for d in dels)
    finally:
        hs.shutdown()


def test_every_listed_gpu_computes_and_the_list_is_a_live_setting(qtbot, make_ctl):
    """Several devices through the app: one SplitBackend worker per device.

    The 'devices' are real CPU backends under the GPU's name (this machine has no
    GPU); the app's path is the real one: settings -> worker -> make_backend-shaped
    factory -> SplitBackend -> Verifier -> the unit's record.
    """
    from engine.cpu import CpuBackend
    from engine.job import verify_range
    from engine.parallel import SplitBackend

    class DeviceStandIn(CpuBackend):
        name = "gpu"

    asked: list[tuple[int, ...]] = []

    def factory(name, params, **kwargs):
        if name != "gpu":
            return CpuBackend(params)
        devices = tuple(kwargs["devices"])
        asked.append(devices)
        return SplitBackend([DeviceStandIn(params) for _ in devices or (0,)])

    ctl = make_ctl(backend_factory=factory)
    ctl.settings.set("gpu_enabled", True)
    ctl.settings.set("gpu_devices", (0, 1))
    with qtbot.waitSignal(ctl.unit_done, timeout=60000) as done:
        ctl.start_engine()
    finished = done.args[0]
    assert asked == [(0, 1)] and finished.backend == "gpu"
    lo, hi = TINY.unit_range(finished.unit)
    assert finished.root_hex == verify_range(TINY, lo, hi, "cpu").root.hex()
    # Changing the list rebuilds the backend between batches, with the new devices.
    ctl.settings.set("gpu_devices", (1,))
    qtbot.waitUntil(lambda: asked[-1] == (1,), timeout=60000)
