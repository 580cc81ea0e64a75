"""Issue #14 items 1 and 2: controls in the window (no tray needed), pause remembered,
Resume during a snooze, and SIGTERM/SIGINT stopping a real app process cleanly."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QToolButton

from app.application import HailstoneApp
from app.controller import AppController
from app.mainwindow import MainWindow
from app.workers import LIVE_THREADS
from engine import Params
from engine.policy import Situation

TINY = Params.custom(name="tiny", unit_bits=22, block_bits=16, sieve_k=16)
BUSY = Params.custom(name="busy", unit_bits=30, block_bits=21, sieve_k=16)
ROOT = Path(__file__).resolve().parent.parent


def _calm(_programs: bool = False) -> Situation:
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


@pytest.fixture
def no_tray_window(qtbot, tmp_path):
    made = []

    def make(params=BUSY):
        ctl = AppController(tmp_path / "profile", params=params, try_network=False, probe=_calm)
        ctl.settings.set("cpu_cores", 1)
        win = MainWindow(ctl, tray_available=lambda: False)
        qtbot.addWidget(win)
        win.show()
        made.append(ctl)
        return ctl, win

    yield make
    for ctl in made:
        ctl.shutdown()


def _button(win: MainWindow, action) -> QToolButton:
    w = win.controls.widgetForAction(action)
    assert isinstance(w, QToolButton) and w.isVisible()
    return w


def test_window_controls_pause_and_the_pause_outlives_a_restart(qtbot, no_tray_window):
    ctl, win = no_tray_window()
    assert not win.tray.available
    assert _button(win, ctl.act_quit).isEnabled()
    ctl.start_engine()
    qtbot.waitUntil(lambda: ctl.state[0] == "computing", timeout=20000)
    with qtbot.waitSignal(
        ctl.state_changed, timeout=20000, check_params_cb=lambda s, _r: s == "paused"
    ):
        _button(win, ctl.act_pause).click()
    assert not _button(win, ctl.act_pause).isEnabled()
    assert _button(win, ctl.act_resume).isEnabled()
    assert win.control_state.text() == "Paused by you"
    assert json.loads((ctl.data_dir / "app_state.json").read_text())["paused"] is True
    ctl.shutdown()

    again, win2 = no_tray_window()
    assert again.user_paused and _button(win2, again.act_resume).isEnabled()
    with qtbot.waitSignal(
        again.state_changed, timeout=20000, check_params_cb=lambda s, _r: s == "paused"
    ):
        again.start_engine()
    assert again.engine is not None
    with qtbot.waitSignal(again.engine.batch_started, timeout=20000):
        _button(win2, again.act_resume).click()
    assert not again.user_paused
    assert json.loads((again.data_dir / "app_state.json").read_text())["paused"] is False


def test_resume_is_enabled_while_snoozed_and_ends_the_snooze(qtbot, no_tray_window):
    ctl, win = no_tray_window()
    ctl.start_engine()
    qtbot.waitUntil(lambda: ctl.state[0] == "computing", timeout=20000)
    menu = win.snooze_button.menu()
    assert menu is win.tray.snooze_menu and win.snooze_button.isVisible()
    with qtbot.waitSignal(
        ctl.state_changed,
        timeout=20000,
        check_params_cb=lambda s, r: s == "waiting" and "snoozed" in r,
    ):
        menu.actions()[0].trigger()  # 1 hour
    assert _button(win, ctl.act_resume).isEnabled()
    assert win.control_state.text().startswith("Snoozed until")
    with qtbot.waitSignal(ctl.engine.batch_started, timeout=20000):
        _button(win, ctl.act_resume).click()
    assert ctl.settings["snooze_until"] == 0.0
    assert not _button(win, ctl.act_resume).isEnabled()
    assert win.control_state.text() == ""


def test_quit_from_the_window_without_a_tray(qtbot, tmp_path):
    hs = HailstoneApp(tmp_path / "p", params=TINY, try_network=False, probe=_calm)
    qtbot.addWidget(hs.window)
    hs.ctl.mark_set_up()
    with qtbot.waitSignal(hs.ctl.unit_started, timeout=20000):
        hs.launch()
    _button(hs.window, hs.ctl.act_quit).click()
    assert not hs.window.isVisible() and not hs.ctl.running
    assert all(not t.thread.isRunning() for t in list(LIVE_THREADS))


CHILD = r"""
import sys
from argparse import Namespace
from pathlib import Path
from app.application import run_gui
from engine import Params

data = Path(sys.argv[1])
params = Params.custom(name="busy", unit_bits=30, block_bits=21, sieve_k=16)
seen = set()

def say(what):
    if what not in seen:
        seen.add(what)
        print(what, flush=True)

import app.application as application
real = application.HailstoneApp

class Watched(real):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.ctl.network_started.connect(lambda f: say("network " + ("up" if f is None else "down")))
        self.ctl.progress.connect(lambda p: say("computing") if p.blocks_done >= 2 else None)

application.HailstoneApp = Watched
loopback = {"listen": ("/ip4/127.0.0.1/tcp/0",), "bootstrap": (), "peers": ()}
code = run_gui(Namespace(data_dir=str(data), params=None, minimized=False),
               params=params, node_overrides=loopback)
print("exit", code, flush=True)
sys.exit(code)
"""


def _profile_with_account(data: Path) -> None:
    from app.network_bridge import Accounts

    try:
        from network.keystore import MIN
    except ImportError:
        pytest.skip("the network layer is not installed")
    Accounts(data, MIN).create("sig-test", "correct horse battery staple")
    (data / "settings.json").write_text(json.dumps({"cpu_cores": 1}))
    (data / "app_state.json").write_text(json.dumps({"setup_complete": True, "version": 1}))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_real_app_process_stops_cleanly_on_a_signal(tmp_path, signum):
    """A real process in network mode (embedded kubo, which takes the handlers when it
    starts): the signal stops it with status 0 and the unit's checkpoint is kept."""
    data = tmp_path / "profile"
    data.mkdir()
    _profile_with_account(data)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen = b""
    try:
        assert proc.stdout is not None
        # Unbuffered reads bounded by a deadline: a child that hangs fails the test.
        deadline = time.monotonic() + 120
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not (b"network up\n" in seen and b"computing\n" in seen):
                left = deadline - time.monotonic()
                assert left > 0 and sel.select(left), f"no progress from the app: {seen!r}"
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"the app ended early: {seen!r}"
                seen += chunk
        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=90)
        out = (seen + rest).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "exit 0" in out
    ckpts = list((data / "checkpoints").glob("*.ckpt"))
    assert ckpts, "the unit's checkpoint was not kept"
    blocks = sum(1 for line in ckpts[0].read_text().splitlines()[1:] if line.strip())
    assert blocks >= 2
    log = (data / "logs" / "hailstone.log").read_text()
    assert f"signal {signal.Signals(signum).name} received" in log


def test_closing_without_a_tray_asks_and_can_minimise_instead(qtbot, no_tray_window):
    ctl, win = no_tray_window(TINY)
    ctl.start_engine()
    quits = []
    ctl.act_quit.triggered.connect(lambda: quits.append(1))
    win.close()
    box = win.close_box
    assert box is not None and box.isVisible() and win.isVisible()
    assert "stops computing" in box.text()
    minimise = next(b for b in box.buttons() if b.text() == "Minimise")
    assert box.defaultButton() is minimise
    minimise.click()
    assert win.isMinimized() and win.isVisible() and ctl.running and not quits
    win.showNormal()
    win.close()
    quit_button = next(b for b in win.close_box.buttons() if b.text() == "Quit")
    quit_button.click()
    assert quits == [1] and not win.isVisible()


def test_session_end_closes_without_asking(qtbot, tmp_path):
    """Logout: a window that refused to close (tray, or the no-tray question) would
    cancel it; the session-end slot quits instead."""
    hs = HailstoneApp(tmp_path / "p", params=TINY, try_network=False, probe=_calm)
    qtbot.addWidget(hs.window)
    hs.ctl.mark_set_up()
    with qtbot.waitSignal(hs.ctl.unit_started, timeout=20000):
        hs.launch()
    hs.session_ending()
    assert hs.window.isVisible() and hs.ctl.running  # a request alone quits nothing
    hs.window.close()  # what the session does next
    assert hs.window.close_box is None and not hs.window.isVisible()
    hs.shutdown()
    assert not hs.ctl.running
