"""Issue #14, beyond the anchors: About/Help with diagnostics, notices, the GPU paused
alone for chosen programs, and a light/dark choice in the app."""

from __future__ import annotations

import time

import pytest
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from app.controller import AppController
from app.network_bridge import BridgeStatus, HistoryRow, NetworkSnapshot
from engine import Params
from engine.policy import Situation

TINY = Params.custom(name="tiny", unit_bits=22, block_bits=16, sieve_k=16)


def _calm(_programs: bool = False) -> Situation:
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


@pytest.fixture
def ctl(tmp_path):
    c = AppController(tmp_path / "p", params=TINY, try_network=False, probe=_calm)
    yield c
    c.shutdown()


def test_about_page_copies_diagnostics(qtbot, ctl):
    from app.about import AboutPage, version

    page = AboutPage(ctl)
    qtbot.addWidget(page)
    ctl.show("no_gpu", "a test reason")
    text = page.copy_diagnostics()
    assert QGuiApplication.clipboard().text() == text
    assert f"Hailstone {version()}" in text and "Python 3." in text
    assert str(ctl.data_dir) in text and "hailstone.log" in text
    assert "a test reason" in text  # the last warnings are included
    assert "Diagnostics copied" in ctl.events.entries[-1].text
    assert any("Licence: MIT" in label.text() for label in page.findChildren(type(page.links)))


def _row(unit: int, status: str, **kw) -> HistoryRow:
    return HistoryRow(
        unit=unit,
        status=status,
        cid=f"bafy{unit}",
        root_hex="ab",
        finished_at=0.0,
        seconds=0.0,
        backend="cpu",
        me="me",
        **kw,
    )


def test_notices_for_verified_and_disputed_units(qtbot, ctl):
    from app.pages import EventLogPage

    log = EventLogPage(ctl)
    qtbot.addWidget(log)
    shown = []
    ctl.message_shown.connect(shown.append)
    status = BridgeStatus(connected=True, text="Network: connected to 1 peer")
    ctl._on_snapshot(NetworkSnapshot(status, (_row(1, "reported_once"), _row(2, "reported_once"))))
    ctl._on_snapshot(
        NetworkSnapshot(
            status,
            (
                _row(1, "verified", agreeing=("bob", "me"), credited=True),
                _row(2, "disputed"),
            ),
        )
    )
    texts = [e.text for e in ctl.events.entries]
    assert "Unit 1 verified: bob got the same root; credited to you." in texts
    assert [m.code for m in shown] == ["dispute_against_you"]
    log.filter.setCurrentIndex(1)  # Notices
    visible = log.visible_texts()
    assert len(visible) == 2 and any("Unit 1 verified" in t for t in visible)
    assert any("did not match your result" in t for t in visible)


def test_the_gpu_alone_rests_while_a_chosen_program_runs(qtbot, ctl):
    sent = []
    ctl._cmd_gpu.connect(lambda enabled, devices: sent.append(enabled))
    ctl.settings.set("gpu_enabled", True)
    ctl.settings.set("gpu_pause_programs", ["Game.exe"])
    sent.clear()
    now = time.time()
    playing = Situation(now, 1e6, False, frozenset({"bash", "game"}))
    decision = ctl.apply_situation(playing)
    assert decision.run  # the CPU keeps computing
    assert ctl.gpu_held_by == "game" and sent == [False]
    assert "GPU paused while game runs" in ctl.events.entries[-1].text
    ctl.apply_situation(playing)
    assert sent == [False]  # said once, not at every probe
    ctl.apply_situation(Situation(now, 1e6, False, frozenset({"bash"})))
    assert ctl.gpu_held_by == "" and sent == [False, True]
    assert "the GPU computes again" in ctl.events.entries[-1].text


def test_light_or_dark_chosen_in_the_app(qtbot, ctl):
    from app import theme
    from app.preferences import PreferencesPage

    app = QApplication.instance()
    before = QPalette(app.palette())
    dash_cls = __import__("app.pages", fromlist=["DashboardPage"]).DashboardPage
    dash = dash_cls(ctl)
    prefs = PreferencesPage(ctl)
    qtbot.addWidget(dash)
    qtbot.addWidget(prefs)
    try:
        prefs.editors["theme"].setCurrentText("dark")
        assert ctl.settings["theme"] == "dark" and theme.is_dark()
        assert app.palette().color(QPalette.ColorRole.Window).lightness() < 80
        assert dash.colours == theme.DARK
        prefs.editors["theme"].setCurrentText("light")
        assert not theme.is_dark()
        assert app.palette().color(QPalette.ColorRole.Window).lightness() > 180
        assert dash.colours == theme.LIGHT
    finally:
        prefs.editors["theme"].setCurrentText("system")
    assert app.palette().color(QPalette.ColorRole.Window) == before.color(QPalette.ColorRole.Window)
