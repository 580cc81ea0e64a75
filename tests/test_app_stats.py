"""Issue #14 item 5: statistics that outlive a restart (rates, units, events, unit time)."""

from __future__ import annotations

import time

from app.controller import AppController
from app.stats import DAY_S, StatsStore
from engine import Params
from engine.policy import Situation

TINY = Params.custom(name="tiny", unit_bits=22, block_bits=16, sieve_k=16)
# 256 blocks: long enough to stop half way through a unit.
HALF = Params.custom(name="half", unit_bits=26, block_bits=18, sieve_k=16)


def _calm(_programs: bool = False) -> Situation:
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


def test_store_keeps_minutes_units_and_events_across_reopen(tmp_path):
    path = tmp_path / "stats.sqlite3"
    now = time.time()
    s = StatsStore(path)
    s.add_numbers("cpu", 6000, 1.0, now - 120)
    s.add_numbers("cpu", 600, 0.5, now - 119)
    s.add_numbers("cpu", 1200, 1.0, now)
    s.add_unit_time("tiny", 3, 2.5)
    s.add_event(now, "info", "engine", "hello")
    # Buffered data is visible before a flush...
    assert s.unit_seconds("tiny", 3) == 2.5
    s.close()
    s = StatsStore(path)
    s.add_unit_time("tiny", 3, 1.5)  # ...and a second run adds to the first
    assert s.unit_seconds("tiny", 3) == 4.0
    assert s.all_unit_seconds("tiny") == {3: 4.0}
    minutes = s.rates_per_minute("cpu", now - 3600)
    assert [v for _t, v in minutes] == [6600 / 60, 1200 / 60] or [v for _t, v in minutes] == [
        6000 / 60,
        600 / 60,
        1200 / 60,
    ]
    assert s.rates_per_minute("gpu", now - 3600) == []
    s.unit_finished("tiny", 3, 1 << 22, now)
    days = s.totals_by_period(DAY_S, 7, now)
    assert len(days) == 7 and days[-1].numbers >= 1200 and days[-1].units == 1
    assert sum(d.numbers for d in days) == 7800
    weeks = s.totals_by_period(7 * DAY_S, 4, now)
    assert sum(w.numbers for w in weeks) == 7800
    assert [e.text for e in s.recent_events(10)] == ["hello"]
    s.close()


def test_an_unusable_file_keeps_the_app_going_in_memory(tmp_path):
    s = StatsStore(tmp_path / "missing-dir" / "stats.sqlite3")
    assert s.error
    s.add_numbers("cpu", 60, 1.0, time.time())
    s.flush()
    assert s.unit_seconds("x", 1) == 0.0


def test_history_after_restart(qtbot, tmp_path):
    """Event log, the 24-hour graph, daily totals and a resumed unit's full time."""
    data = tmp_path / "profile"
    ctl = AppController(data, params=HALF, try_network=False, probe=_calm)
    ctl.settings.set("cpu_cores", 1)
    ctl.start_engine()
    qtbot.waitUntil(
        lambda: ctl.engine is not None
        and ctl.engine.session.blocks_done >= 40,
        timeout=60000,
    )
    ctl.note("before the restart")
    ctl.shutdown()

    again = AppController(data, params=HALF, try_network=False, probe=_calm)
    try:
        first_run_s = again.stats.unit_seconds("half", 0)
        assert first_run_s > 0
        texts = [e.text for e in again.events.entries]
        assert "before the restart" in texts
        _t, v = again.rates.coarse["cpu"].arrays()
        assert len(v) and v.max() > 0  # the 24-hour graph starts with the earlier run
        again.settings.set("cpu_cores", 1)
        with qtbot.waitSignal(again.unit_done, timeout=120000) as done:
            again.start_engine()
        d = done.args[0]
        assert d.unit == 0
        row = next(r for r in again.history() if r.unit == 0)
        # Both runs count: more than the last run's own compute time.
        assert row.seconds >= first_run_s + d.seconds * 0.5
        assert row.seconds > d.seconds
        assert any("Unit 0 done in" in e.text for e in again.events.entries)
        days = again.stats.totals_by_period(DAY_S, 14, time.time())
        assert days[-1].units == 1 and days[-1].numbers >= HALF.unit_size
    finally:
        again.shutdown()


def test_dashboard_days_and_weeks_views(qtbot, tmp_path):
    from app.pages import DashboardPage

    ctl = AppController(tmp_path / "p", params=TINY, try_network=False, probe=_calm)
    now = time.time()
    ctl.stats.add_numbers("cpu", 5_000_000, 10.0, now - DAY_S)
    ctl.stats.add_numbers("cpu", 7_000_000, 10.0, now)
    ctl.stats.unit_finished("tiny", 0, 1 << 22, now)
    page = DashboardPage(ctl)
    qtbot.addWidget(page)
    page.show()
    try:
        page.set_view(2)
        assert page.plots.currentWidget() is page.bars_plot and page.period_label.isVisible()
        assert "1 unit finished" in page.period_label.text()
        totals = page.refresh_periods()
        assert totals[-1].numbers == 7_000_000 and sum(t.numbers for t in totals) == 12_000_000
        page.set_view(3)
        assert "weeks" in page.period_label.text()
        page.set_view(0)
        assert page.plots.currentWidget() is page.plot and not page.period_label.isVisible()
    finally:
        ctl.shutdown()
