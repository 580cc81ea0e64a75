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
        assert hist.table.rowCount() >= 1 and hist.table.item(0, 0).text() == "0"
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
    qtbot.waitUntil(lambda: len(ticks) >= 30, timeout=30000)
    timer.stop()
    # The GUI thread's 10 ms timer kept firing while the engine worked through batches.
    assert len(blocks) - start_blocks >= 2
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
    log_page.search.setText("passphrase")
    assert all("passphrase" in t.lower() for t in log_page.visible_texts())


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
