"""Issue #14 item 9: the small things a volunteer notices."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.controller import AppController
from app.formatting import fmt_range
from app.messages import gpu_reason_in_words
from engine import PRODUCTION, Params
from engine.policy import Situation

TINY = Params.custom(name="tiny", unit_bits=22, block_bits=16, sieve_k=16)


def _calm(_programs: bool = False) -> Situation:
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


@pytest.fixture
def ctl(tmp_path):
    c = AppController(tmp_path / "p", params=TINY, try_network=False, probe=_calm)
    yield c
    c.shutdown()


def test_an_out_of_range_idle_time_is_refused_with_a_reason(qtbot, ctl):
    from app.preferences import PreferencesPage

    page = PreferencesPage(ctl)
    qtbot.addWidget(page)
    page.show()
    editor = page.editors["idle_seconds"]
    editor.setFocus()
    editor.lineEdit().selectAll()
    QTest.keyClicks(editor, "999999")
    QTest.keyClick(editor, Qt.Key.Key_Return)
    err = page.errors["idle_seconds"]
    assert not err.isHidden()
    assert "999999 is outside 10–86400 s" in err.text() and "stays 300 s" in err.text()
    assert ctl.settings["idle_seconds"] == 300 and editor.value() == 300
    # A value in range is taken, and the note goes away.
    editor.lineEdit().selectAll()
    QTest.keyClicks(editor, "600")
    QTest.keyClick(editor, Qt.Key.Key_Return)
    assert ctl.settings["idle_seconds"] == 600 and err.isHidden()


def test_wizard_starts_in_the_username_and_refuses_a_weak_passphrase(qtbot, ctl):
    from app.wizard import SetupWizard

    wiz = SetupWizard(ctl)
    qtbot.addWidget(wiz)
    wiz.show()
    page = wiz.account
    if page.accounts is None:
        pytest.skip("the network layer is not installed")
    qtbot.waitUntil(lambda: wiz.focusWidget() is page.username, timeout=5000)
    page.username.setText("someone")
    page.passphrase.setText("password")
    page.passphrase2.setText("password")
    assert not page.isComplete()
    assert page.strength_note.text().startswith("Not accepted")
    page.passphrase.setText("correct horse battery staple")
    page.passphrase2.setText("correct horse battery staple")
    assert page.isComplete()
    page.import_radio.setChecked(True)
    page.import_path.setText(str(ctl.data_dir / "nothing.key"))
    page.import_passphrase.setText("x")
    wiz.next()
    assert page.status.text().startswith("Importing the account")
    qtbot.waitUntil(lambda: page._job is None, timeout=20000)
    wiz.hide()


def test_gpu_reasons_are_words_not_developer_text():
    text = gpu_reason_in_words("CuPy is not installed or does not load (No module named 'cupy')")
    assert "cupy" not in text.lower() and "NVIDIA" in text
    assert "driver" in gpu_reason_in_words("no CUDA driver is installed")
    assert "update" in gpu_reason_in_words(
        "the CUDA driver is too old (it supports CUDA 11.4, CuPy needs 12.0); update the driver"
    )


def test_unit_ranges_read_as_powers_of_two():
    lo, hi = PRODUCTION.unit_range(5)
    assert fmt_range(PRODUCTION, lo, hi) == "from 2^71 + 5·2^40, 1.10 T numbers"
    lo, hi = PRODUCTION.unit_range(0)
    assert fmt_range(PRODUCTION, lo, hi).startswith("from 2^71,")


def test_a_paused_dashboard_shows_no_time_left(qtbot, ctl):
    from app.pages import DashboardPage
    from app.workers import Progress

    dash = DashboardPage(ctl)
    qtbot.addWidget(dash)
    ctl._on_state("computing", "cpu")
    ctl.progress.emit(Progress(0, 10, 64, 12.0, "cpu", 0.1))
    assert dash.eta_label.text().startswith("Time left")
    ctl._on_state("paused", "paused by you")
    assert "Time left" not in dash.eta_label.text()
    assert "checkpoint" in dash.eta_label.text()


def test_event_log_has_dates_follows_new_lines_and_saves(qtbot, ctl, tmp_path):
    from PySide6.QtGui import QGuiApplication

    from app.pages import EventLogPage

    page = EventLogPage(ctl)
    qtbot.addWidget(page)
    page.resize(600, 300)
    page.show()
    for i in range(200):
        ctl.note(f"line {i}")
    assert page.table.item(0, 0).text().startswith(time.strftime("%Y-"))
    bar = page.table.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    page.table.selectRow(page.table.rowCount() - 1)
    page.copy()
    assert QGuiApplication.clipboard().text().rstrip().endswith("line 199")
    out = tmp_path / "events.txt"
    assert page.save_to(out)
    lines = out.read_text().splitlines()
    # The copy itself was confirmed in the log (and the status bar).
    assert lines[-1].endswith("1 event log line copied.")
    assert lines[-2].endswith("line 199") and "\tinfo\tapp\t" in lines[-2]
    assert page.save_to(tmp_path / "missing" / "x.txt") is False


def test_plot_axis_before_samples_and_no_gpu_line_without_a_gpu(qtbot, ctl):
    """Issue #14 item 6: no −400…400 "mnumbers/s" axis, no GPU line drawn at zero."""
    from app.pages import DashboardPage

    dash = DashboardPage(ctl)
    qtbot.addWidget(dash)
    dash.show()
    pi = dash.plot.getPlotItem()
    ctl.rates.tick(time.monotonic())
    dash.redraw()
    (_x0, _x1), (y0, y1) = pi.getViewBox().viewRange()
    assert y0 >= 0 and y1 - y0 >= 10  # never negative, never a milli-range
    ctl._on_rate("cpu", 2.5e9, 0.1)
    ctl.rates.tick(time.monotonic())
    dash.redraw()
    assert dash.curves["cpu"] in pi.items and dash.curves["gpu"] not in pi.items
    ctl._on_rate("gpu", 5e11, 0.25)
    ctl.rates.tick(time.monotonic())
    dash.redraw()
    assert dash.curves["gpu"] in pi.items  # once a GPU reports, its line appears
