"""The main window's pages: dashboard, history, network, leaderboard, account, event log.

Preferences live in app/preferences.py. Pages only read from the controller
and its signals and send commands through it; long operations (key
derivation) run as pool jobs.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import credit
from app.controller import AppController
from app.credit import credit_summary
from app.eventlog import MAX_ENTRIES, Entry
from app.formatting import fmt_count, fmt_duration, fmt_range, fmt_rate
from app.messages import classify_exception
from app.network_bridge import (
    BANDWIDTH_COVERAGE,
    TRAFFIC_NOT_MEASURED,
    BridgeStatus,
    block_task_label,
    trust_root,
)
from app.theme import plot_colours
from app.widgets import ElidedLabel
from app.workers import run_job


def _page(title: str, subtitle: str = "") -> tuple[QWidget, QVBoxLayout]:
    w = QWidget()
    lay = QVBoxLayout(w)
    head = QLabel(f"<h2>{title}</h2>")
    lay.addWidget(head)
    if subtitle:
        sub = QLabel(subtitle)
        sub.setWordWrap(True)
        lay.addWidget(sub)
    return w, lay


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


def _cell_button(text: str) -> tuple[QWidget, QPushButton]:
    """A table-cell button at its natural width (a bare cell widget fills the column)."""
    cell = QWidget()
    lay = QHBoxLayout(cell)
    lay.setContentsMargins(2, 0, 2, 0)
    b = QPushButton(text)
    lay.addWidget(b)
    lay.addStretch(1)
    return cell, b


# ---- dashboard ---------------------------------------------------------------------------


class DashboardPage(QWidget):
    """Live throughput (CPU and GPU curves), current unit, totals, network summary."""

    VIEWS = (
        ("Last 10 minutes", "fine", 60.0, "minutes ago"),
        ("Last 24 hours", "coarse", 3600.0, "hours ago"),
        ("Days", "days", 86400.0, "computed per day"),
        ("Weeks", "weeks", 7 * 86400.0, "computed per week"),
    )
    PERIODS = {"days": 14, "weeks": 12}

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        self.view = 0
        self._last_progress: Any = None
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("<h2>Dashboard</h2>"))
        top.addStretch(1)
        self.rate_label = QLabel("0 numbers/s")
        self.rate_label.setObjectName("rateLabel")
        f = self.rate_label.font()
        f.setPointSizeF(f.pointSizeF() * 1.4)
        f.setBold(True)
        self.rate_label.setFont(f)
        top.addWidget(self.rate_label)
        lay.addLayout(top)

        # A candidate is the one thing that must never scroll by unnoticed.
        self.candidate_banner = QLabel("")
        self.candidate_banner.setObjectName("candidateBanner")
        self.candidate_banner.setWordWrap(True)
        self.candidate_banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.candidate_banner.setStyleSheet(
            "QLabel#candidateBanner { background: #fff3cd; color: #5c3c00; "
            "border: 2px solid #d39e00; border-radius: 4px; padding: 8px; }"
        )
        self.candidate_banner.setVisible(False)
        lay.addWidget(self.candidate_banner)

        views = QHBoxLayout()
        self.view_group = QButtonGroup(self)
        for i, (title, *_rest) in enumerate(self.VIEWS):
            b = QPushButton(title)
            b.setCheckable(True)
            b.setChecked(i == 0)
            self.view_group.addButton(b, i)
            views.addWidget(b)
        views.addStretch(1)
        self.view_group.idClicked.connect(self.set_view)
        lay.addLayout(views)

        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(150)
        pi = self.plot.getPlotItem()
        self.legend = pi.addLegend(offset=(10, 10))
        pi.setDownsampling(mode="peak")
        pi.setClipToView(True)
        pi.setMouseEnabled(x=False, y=False)
        # Never below zero, and never a range so small the axis reads "m numbers/s"
        # (before the first sample it read −400…400 "mnumbers/s").
        pi.getViewBox().setLimits(yMin=0, minYRange=10)
        pi.setYRange(0, 10, padding=0)
        pi.enableAutoRange(axis="y")  # setYRange turned it off
        # One PlotDataItem per series, created once and updated in place (STYLE §7).
        # The GPU curve joins the plot only once a GPU reported: no flat line at 0
        # on a computer without one.
        self.curves = {"cpu": pi.plot(name="CPU"), "gpu": pg.PlotDataItem(name="GPU")}
        self._gpu_shown = False
        # Days and weeks: bars of numbers verified, from the statistics file.
        self.bars_plot = pg.PlotWidget()
        self.bars_plot.setMinimumHeight(150)
        bp = self.bars_plot.getPlotItem()
        bp.setMouseEnabled(x=False, y=False)
        bp.getViewBox().setLimits(yMin=0, minYRange=10)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        bp.addItem(self.bars)
        self.colours = plot_colours()
        self.apply_theme()
        pi.setXRange(-10, 0, padding=0)
        # The system may switch between light and dark while the app runs.
        QGuiApplication.styleHints().colorSchemeChanged.connect(self.apply_theme)
        ctl.setting_changed.connect(self._on_setting)  # or the volunteer picks one
        self.plots = QStackedWidget()
        self.plots.addWidget(self.plot)
        self.plots.addWidget(self.bars_plot)
        lay.addWidget(self.plots, 1)
        self.period_label = QLabel("")
        self.period_label.setWordWrap(True)
        self.period_label.setVisible(False)
        lay.addWidget(self.period_label)

        grid = QGridLayout()
        unit_box = QGroupBox("Current unit")
        ul = QVBoxLayout(unit_box)
        self.unit_label = QLabel("Not started")
        self.unit_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        # One line each (full text in the tooltip): a long reason or error detail must
        # neither widen the window nor make the box taller than the screen allows.
        self.eta_label = ElidedLabel("")
        self.state_label = ElidedLabel("")
        bold = self.state_label.font()
        bold.setBold(True)
        self.state_label.setFont(bold)
        ul.addWidget(self.unit_label)
        ul.addWidget(self.progress_bar)
        ul.addWidget(self.eta_label)
        ul.addWidget(self.state_label)
        grid.addWidget(unit_box, 0, 0)

        totals_box = QGroupBox("My credit")
        tl = QFormLayout(totals_box)
        self.units_label = QLabel("0")
        self.verified_label = QLabel("—")
        self.waiting_label = QLabel("0")
        self.numbers_label = QLabel("0")
        tl.addRow("Units computed here:", self.units_label)
        tl.addRow("Credited to you:", self.verified_label)
        tl.addRow("Waiting for a 2nd result:", self.waiting_label)
        tl.addRow("Numbers credited:", self.numbers_label)
        self.credit_note = QLabel(
            "A unit earns credit when another volunteer's independent result matches yours."
        )
        self.credit_note.setWordWrap(True)
        tl.addRow(self.credit_note)
        grid.addWidget(totals_box, 0, 1)

        net_box = QGroupBox("Network")
        nl = QFormLayout(net_box)
        # One line each, shortened with "…" (full text in the tooltip): wrapped labels
        # in these narrow boxes overlapped each other at small window sizes.
        self.net_label = ElidedLabel(ctl.network_text())
        self.frontier_label = ElidedLabel("—")
        self.peers_label = QLabel("0")
        nl.addRow(self.net_label)
        nl.addRow("Frontier:", self.frontier_label)
        nl.addRow("Peers:", self.peers_label)
        grid.addWidget(net_box, 0, 2)
        for col in range(3):
            grid.setColumnStretch(col, 1)
        for box in (unit_box, totals_box, net_box):
            # Never squeezed below what their text needs (the plot gives way instead).
            box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        lay.addLayout(grid)

        ctl.progress.connect(self.on_progress)
        ctl.unit_started.connect(self.on_unit_started)
        ctl.unit_done.connect(self.on_unit_done)
        ctl.history_changed.connect(self.refresh_totals)
        ctl.block_task_started.connect(self.on_block_task)
        ctl.state_changed.connect(self.on_state)
        ctl.network_status.connect(self.on_network)
        ctl.sampled.connect(self.redraw)
        ctl.candidates_changed.connect(self.on_candidates)
        self.on_state(*ctl.state)
        self.refresh_totals()
        self.on_candidates()

    @Slot()
    def on_candidates(self) -> None:
        found = sorted(self.ctl.candidate_units.values(), key=lambda c: c.unit)
        self.candidate_banner.setVisible(bool(found))
        if not found:
            return
        units = ", ".join(str(c.unit) for c in found[:5]) + (" …" if len(found) > 5 else "")
        numbers = [n for c in found for n in c.numbers][:3]
        listed = f" (n = {', '.join(str(n) for n in numbers)})" if numbers else ""
        self.candidate_banner.setText(
            f"<b>Candidate found in unit{'s' if len(found) > 1 else ''} {units}</b>{listed}: a "
            "number did not fall below itself within the step bound. If it stands it is a "
            "historic finding; the unit is held for review and never counted as verified "
            "until then. Keep this profile and its event log."
        )

    @Slot()
    def apply_theme(self, *_args: Any) -> None:
        """Colour the plot for the current light or dark scheme."""
        colours = self.colours = plot_colours()
        self.plot.setBackground(colours.background)
        pi = self.plot.getPlotItem()
        pi.showGrid(x=True, y=True, alpha=colours.grid_alpha)
        # units= turns on SI prefixes on the axis (800 M, not 8e+08).
        pi.setLabel("left", "rate", units="numbers/s", color=colours.foreground)
        pi.setLabel("bottom", self.VIEWS[self.view][3], color=colours.foreground)
        for axis in ("left", "bottom"):
            pi.getAxis(axis).setTextPen(colours.foreground)
            pi.getAxis(axis).setPen(colours.foreground)
        self.curves["cpu"].setPen(pg.mkPen(colours.cpu, width=2))
        self.curves["gpu"].setPen(pg.mkPen(colours.gpu, width=2))
        self.bars_plot.setBackground(colours.background)
        bp = self.bars_plot.getPlotItem()
        bp.showGrid(x=False, y=True, alpha=colours.grid_alpha)
        for axis in ("left", "bottom"):
            bp.getAxis(axis).setTextPen(colours.foreground)
            bp.getAxis(axis).setPen(colours.foreground)
        self.bars.setOpts(brush=pg.mkBrush(colours.cpu), pen=pg.mkPen(colours.cpu))

    @Slot(str, object)
    def _on_setting(self, key: str, _value: Any) -> None:
        if key == "theme":
            self.apply_theme()

    @Slot(int)
    def set_view(self, index: int) -> None:
        self.view = index
        _title, kind, _scale, label = self.VIEWS[index]
        bars = kind in self.PERIODS
        self.plots.setCurrentWidget(self.bars_plot if bars else self.plot)
        self.period_label.setVisible(bars)
        if bars:
            self.bars_plot.getPlotItem().setLabel(
                "left", label, units="numbers", color=self.colours.foreground
            )
            self.refresh_periods()
        else:
            pi = self.plot.getPlotItem()
            pi.setLabel("bottom", label, color=self.colours.foreground)
            pi.setXRange(-10 if index == 0 else -24, 0, padding=0)
            pi.enableAutoRange(axis="y")  # the other view's scale does not carry over
        self.view_group.button(index).setChecked(True)
        self.redraw()

    def refresh_periods(self) -> list[Any]:
        """Bars of numbers verified per day or week, from the statistics file."""
        from app.stats import DAY_S

        _title, kind, _scale, _label = self.VIEWS[self.view]
        count = self.PERIODS[kind]
        period = DAY_S if kind == "days" else 7 * DAY_S
        totals = self.ctl.stats.totals_by_period(period, count, time.time())
        self.bars.setOpts(x=list(range(count)), height=[t.numbers for t in totals], width=0.7)
        fmt = "%a %d" if kind == "days" else "%d %b"
        step = 1 if count <= 14 else 2
        ticks = [(i, time.strftime(fmt, time.localtime(t.start))) for i, t in enumerate(totals)][
            ::step
        ]
        bp = self.bars_plot.getPlotItem()
        bp.getAxis("bottom").setTicks([ticks])
        bp.setXRange(-0.6, count - 0.4, padding=0)
        top = max([t.numbers for t in totals] + [10])
        bp.setYRange(0, top * 1.1, padding=0)
        numbers = sum(t.numbers for t in totals)
        units = sum(t.units for t in totals)
        span = f"the last {count} {'days' if kind == 'days' else 'weeks'}"
        self.period_label.setText(
            f"In {span}: {fmt_count(numbers)} numbers computed and {units} "
            f"unit{'s' if units != 1 else ''} finished on this computer (kept in the profile)."
        )
        return totals

    @Slot()
    def redraw(self) -> None:
        now = time.monotonic()
        r = self.ctl.rates
        self.rate_label.setText(fmt_rate(r.total(now)))
        if not self.isVisible():
            return  # nothing to paint; the ring buffers keep sampling
        _title, kind, scale, _label = self.VIEWS[self.view]
        if kind in self.PERIODS:
            return  # bars change per unit and on view change, not per sample
        if not self._gpu_shown and r.current("gpu", now) > 0:
            self._gpu_shown = True
            self.plot.getPlotItem().addItem(self.curves["gpu"])
        for backend, curve in self.curves.items():
            if backend == "gpu" and not self._gpu_shown:
                continue
            buf = (r.fine if kind == "fine" else r.coarse)[backend]
            t, v = buf.arrays()
            curve.setData((t - now) / scale, v, skipFiniteCheck=True)

    @Slot(object)
    def on_unit_started(self, a: Any) -> None:
        self.unit_label.setText(f"Unit {a.unit:,}: {fmt_range(self.ctl.params, a.lo, a.hi)}")
        self.unit_label.setToolTip(f"[{a.lo}, {a.hi})")

    @Slot(object)
    def on_progress(self, p: Any) -> None:
        self.progress_bar.setRange(0, p.blocks_total)
        self.progress_bar.setValue(p.blocks_done)
        self.progress_bar.setFormat(f"block {p.blocks_done} of {p.blocks_total} (%p%)")
        self._last_progress = p
        self._show_eta()

    def _show_eta(self) -> None:
        p = self._last_progress
        if p is None:
            self.eta_label.setText("")
        elif p.blocks_done >= p.blocks_total:
            self.eta_label.setText(f"Finished on {p.backend.upper()}")
        elif self.ctl.state[0] != "computing":
            # Paused or waiting: no time is passing on the unit, so no "time left".
            self.eta_label.setText("Continues where it stopped (kept in the checkpoint)")
        else:
            self.eta_label.setText(f"Time left: {fmt_duration(p.eta_s)} on {p.backend.upper()}")

    @Slot(object)
    def on_block_task(self, task: Any) -> None:
        what = block_task_label(task.purpose).capitalize()
        self.unit_label.setText(
            f"{what}: block {task.block} of another node's unit ({task.work_cid[:16]}…)"
        )

    @Slot(object)
    def on_unit_done(self, _d: Any) -> None:
        self.refresh_totals()
        if self.VIEWS[self.view][1] in self.PERIODS:
            self.refresh_periods()

    @Slot()
    def refresh_totals(self) -> None:
        c = credit_summary(self.ctl.history(), self.ctl.params.unit_size)
        units = c["computed"]
        self.units_label.setText(f"{units} ({fmt_count(c['numbers_computed'])} numbers)")
        if self.ctl.bridge is None or self.ctl.bridge.solo:
            self.verified_label.setText("none in solo mode")
            self.waiting_label.setText("—")
            self.numbers_label.setText("0")
            self.credit_note.setText("Solo mode: results stay here and earn no credit.")
            self.credit_note.setToolTip(
                "Solo mode: results stay on this computer and earn no credit until the "
                "network runs and a second volunteer confirms them."
            )
            return
        self.verified_label.setText(f"{c['credited']} unit{'s' if c['credited'] != 1 else ''}")
        self.waiting_label.setText(str(c["waiting"]))
        self.numbers_label.setText(fmt_count(c["numbers_credited"]))
        self.credit_note.setText("Credit comes when a second volunteer's result matches yours.")
        self.credit_note.setToolTip(
            "A unit earns credit when another volunteer's independent result matches "
            "yours; the leaderboard counts only credited units. History says what each "
            "unit is waiting for."
        )

    @Slot(str, str)
    def on_state(self, state: str, reason: str) -> None:
        text = {
            "computing": "Computing",
            "paused": "Paused",
            "waiting": "Waiting",
            "syncing": "Catching up with the network…",
            "preparing": "Getting ready",
            "idle": "Idle",
            "error": "Stopped by an error",
            "stopped": "Not running",
        }.get(state, state)
        show_reason = reason and state not in ("computing", "syncing") and reason != text
        self.state_label.setText(text + (f" — {reason}" if show_reason else ""))
        self._show_eta()

    @Slot(object)
    def on_network(self, s: Any) -> None:
        self.net_label.setText(s.text)
        self.net_label.setToolTip(f"{s.text}\n{s.advice}" if s.advice else s.text)
        unit = s.frontier
        p = self.ctl.params
        self.frontier_label.setText(
            f"unit {unit:,}: all below "
            + ("computed here" if not s.connected else "verified by the network")
        )
        self.frontier_label.setToolTip(
            f"Every n < 2^{p.start.bit_length() - 1} + {unit:,}·2^{p.unit_bits} is "
            + ("computed on this computer." if not s.connected else "verified by the network.")
        )
        self.peers_label.setText(str(s.peers))


# ---- history -------------------------------------------------------------------------


class HistoryPage(QWidget):
    """My units: status in words, what each is waiting for, details with a double-click."""

    COLUMNS = ["Unit", "Status", "Finished", "Time", "Backend", "Record (CID)", ""]

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        self.rows: list[Any] = []
        _w, lay = _page(
            "History",
            "The units this profile computed, newest first. Select one to see what it is "
            "waiting for; double-click for its details.",
        )
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(_w)
        self.table = _table(self.COLUMNS)
        # The CID takes the room that is left (elided), so the Copy button stays in view.
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        lay.addWidget(self.table, 1)
        self.explain_label = QLabel("")
        self.explain_label.setWordWrap(True)
        self.explain_label.setMinimumHeight(40)
        lay.addWidget(self.explain_label)
        self.table.itemSelectionChanged.connect(self._explain_selected)
        self.table.cellDoubleClicked.connect(lambda r, _c: self.show_details(r))
        ctl.unit_done.connect(lambda _d: self.refresh())
        ctl.history_changed.connect(self.refresh)

    @Slot()
    def refresh(self) -> None:
        selected = self._selected_unit()
        rows = self.rows = self.ctl.history()
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            finished = (
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r.finished_at))
                if r.finished_at
                else ""
            )
            vals = [
                f"{r.unit:,}",
                credit.title(r.status),
                finished,
                fmt_duration(r.seconds) if r.seconds else "",
                r.backend.upper(),
                r.cid or "— (solo: not published)",
            ]
            for j, v in enumerate(vals):
                item = QTableWidgetItem(v)
                item.setToolTip(credit.explain(r))
                self.table.setItem(i, j, item)
            cell, copy = _cell_button("Copy")
            copy.setEnabled(bool(r.cid or r.root_hex))
            copy.setToolTip("Copy the record's CID (or, in solo mode, the root) to the clipboard")
            copy.clicked.connect(
                lambda _c=False, text=(r.cid or r.root_hex): QGuiApplication.clipboard().setText(
                    text
                )
            )
            self.table.setCellWidget(i, 6, cell)
        units = [r.unit for r in rows]
        if selected in units:
            self.table.selectRow(units.index(selected))
        elif rows and not self.table.selectedIndexes():
            self.table.selectRow(0)
        self._explain_selected()

    def _selected_unit(self) -> int | None:
        idx = self.table.selectedIndexes()
        if not idx or idx[0].row() >= len(self.rows):
            return None
        return self.rows[idx[0].row()].unit

    @Slot()
    def _explain_selected(self) -> None:
        idx = self.table.selectedIndexes()
        if not idx or idx[0].row() >= len(self.rows):
            self.explain_label.setText("")
            return
        r = self.rows[idx[0].row()]
        self.explain_label.setText(
            f"<b>Unit {r.unit:,}: {credit.title(r.status)}.</b> {html.escape(credit.explain(r))}"
        )

    def show_details(self, row: int) -> QMessageBox | None:
        """The per-unit details: range, blocks, status, who confirmed it, its records."""
        if not 0 <= row < len(self.rows):
            return None
        r = self.rows[row]
        p = self.ctl.params
        lo, hi = p.unit_range(r.unit)
        lines = [
            f"<b>Unit {r.unit:,}</b>: {credit.title(r.status)}",
            html.escape(credit.explain(r)),
            f"<b>Range</b>: {fmt_range(p, lo, hi)}<br>[{lo}, {hi})",
            f"<b>Blocks</b>: {p.blocks_per_unit} of {fmt_count(p.block_size)} numbers each",
        ]
        if r.agreeing:
            names = [f"{n} (you)" if n == r.me else n for n in r.agreeing]
            lines.append(f"<b>Same root reported by</b>: {html.escape(', '.join(names))}")
        if r.disagreeing:
            lines.append(f"<b>Different root from</b>: {html.escape(', '.join(r.disagreeing))}")
        if r.root_hex:
            lines.append(f"<b>Root (Merkle root of the block evidence)</b>: {r.root_hex}")
        if r.seconds:
            lines.append(
                f"<b>Compute time</b>: {html.escape(fmt_duration(r.seconds))} "
                f"on {r.backend.upper() or '?'} (every run that worked on it)"
            )
        cids = r.work_cids or ((r.cid,) if r.cid else ())
        if cids:
            lines.append(
                "<b>Records</b> (open with <tt>main.py records show CID</tt>):<br>"
                + "<br>".join(cids)
            )
        box = QMessageBox(self)
        box.setWindowTitle(f"Unit {r.unit:,}")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText("<br><br>".join(lines))
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        box.setModal(False)
        box.show()
        self.details = box
        return box

    def showEvent(self, event: Any) -> None:  # Qt override
        self.refresh()
        super().showEvent(event)


# ---- network ---------------------------------------------------------------------------


class NetworkPage(QWidget):
    """Peer id, peers, sync state, ledger size, rejected records by reason."""

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        _w, lay = _page("Network")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(_w)
        self.status_label = QLabel(f"<b>{ctl.network_text()}</b>")
        self.status_label.setWordWrap(True)
        lay.addWidget(self.status_label)
        # What is going on and what to do about it, in words (not only numbers).
        self.advice_label = QLabel("")
        self.advice_label.setWordWrap(True)
        self.advice_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.advice_label)
        form = QFormLayout()
        self.fields = {}
        for key, title in (
            ("peer_id", "Peer id"),
            ("listen", "Listening on"),
            ("peers", "Connected peers"),
            ("state", "Sync state"),
            ("records", "Ledger size (records)"),
            ("outbox", "Waiting to publish"),
            ("frontier", "Verified frontier (unit)"),
            ("traffic", "Hailstone's traffic"),
        ):
            lab = QLabel("—")
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = lab
            form.addRow(title + ":", lab)
        lay.addLayout(form)
        # Say what the figures and the limit cover, and what they do not.
        self.traffic_note = QLabel(f"{TRAFFIC_NOT_MEASURED} {BANDWIDTH_COVERAGE}")
        self.traffic_note.setWordWrap(True)
        self.traffic_note.setObjectName("traffic_note")
        self.traffic_note.setStyleSheet("color: palette(placeholder-text);")
        lay.addWidget(self.traffic_note)
        lay.addWidget(QLabel("<b>Rejected records by reason</b>"))
        self.rejected = _table(["Reason", "Count"])
        self.rejected_note = QLabel("None so far: every record received was valid.")
        lay.addWidget(self.rejected_note)
        lay.addWidget(self.rejected, 1)
        self.rejected.setVisible(False)
        lay.addStretch(0)  # takes the room while the (empty) table is hidden
        ctl.network_status.connect(self.on_status)

    @Slot(object)
    def on_status(self, s: Any) -> None:
        self.status_label.setText(f"<b>{s.text}</b>")
        self.advice_label.setText(s.advice)
        self.fields["peer_id"].setText(s.peer_id or "—")
        self.fields["listen"].setText("\n".join(s.listen) or "—")
        self.fields["peers"].setText(str(s.peers))
        self.fields["state"].setText(s.sync_text or s.state or "—")
        self.fields["records"].setText(str(s.records))
        self.fields["outbox"].setText(str(s.outbox))
        self.fields["frontier"].setText(str(s.frontier))
        self.fields["traffic"].setText(s.traffic or "—")
        items = sorted(s.rejected.items(), key=lambda kv: -kv[1])
        self.rejected_note.setVisible(not items)
        self.rejected.setVisible(bool(items))  # an empty table explains nothing
        self.rejected.setRowCount(len(items))
        for i, (reason, count) in enumerate(items):
            self.rejected.setItem(i, 0, QTableWidgetItem(reason))
            self.rejected.setItem(i, 1, QTableWidgetItem(str(count)))


# ---- leaderboard ---------------------------------------------------------------------------


class LeaderboardPage(QWidget):
    """Accounts ranked by verified units, from the derived network state."""

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        _w, lay = _page("Leaderboard")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(_w)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        self.table = _table(
            [
                "#",
                "Account",
                "Units credited",
                "Waiting for a 2nd result",
                "Numbers verified",
                "Weight",
            ]
        )
        self.table.setColumnHidden(5, True)  # shown under the trust protocol only
        lay.addWidget(self.table, 1)
        ctl.leaderboard_changed.connect(self.refresh)

    @Slot()
    def refresh(self) -> None:
        rows = self.ctl.leaderboard()
        if self.ctl.bridge is None or self.ctl.bridge.solo:
            self.note.setText(
                "The leaderboard comes from the network; in solo mode there is none yet."
            )
        elif all(r.weight is None for r in rows):
            self.note.setText(
                "A unit is credited to the first two volunteers whose independent results "
                "agree. Units that wait for a second matching result are counted under "
                "“Waiting” and earn credit once it arrives. Your row is in bold."
            )
        else:
            self.note.setText(
                "Under the trust protocol a unit is credited once independent results from "
                "a randomly drawn second volunteer match and its block audits pass; "
                "“Weight” is what each account has earned that way. Units still waiting "
                "are counted under “Waiting”. Your row is in bold."
            )
        self.table.setColumnHidden(5, all(r.weight is None for r in rows))
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            name = f"{r.name} (you)" if r.me else r.name
            weight = "" if r.weight is None else str(r.weight)
            vals = (str(r.rank), name, str(r.units), str(r.pending), fmt_count(r.numbers), weight)
            for j, v in enumerate(vals):
                item = QTableWidgetItem(v)
                if r.me:
                    f = item.font()
                    f.setBold(True)
                    item.setFont(f)
                self.table.setItem(i, j, item)

    def showEvent(self, event: Any) -> None:  # Qt override
        self.refresh()
        super().showEvent(event)


# ---- account ---------------------------------------------------------------------------------


def verification_text(status: Any) -> tuple[str, str]:
    """The verification rule in force and this account's weight, in words
    (PROTOCOL §11); the second line is "" when the trust protocol is off."""
    if not status.trust_on:
        return (
            "<b>Quorum:</b> a unit counts when two accounts report the same result. "
            "The trust protocol is off because no genesis keys are configured "
            "(PROTOCOL §11); until the project publishes them, two accounts run by one "
            "person could agree on a result.",
            "",
        )
    g, b = status.trust_genesis, status.trust_beacons
    rule = (
        "<b>Trust protocol:</b> results count through earned weight; "
        f"{g} genesis key{'s' if g != 1 else ''}, {b} beacon key{'s' if b != 1 else ''} "
        "(settings trust_genesis / trust_beacons)."
    )
    w = status.account_weight
    if w is None:
        weight = "Your account's earned weight: shown once the network node is running."
    elif w == 0:
        weight = (
            "Your account's earned weight: <b>none yet</b>: fresh accounts carry no weight "
            "until independent work matches theirs."
        )
    else:
        weight = f"Your account's earned weight: <b>{w}</b>"
    return rule, weight


class AccountPage(QWidget):
    """Username, this account's nodes (revoke), export, change passphrase."""

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        self.accounts = ctl.accounts()
        _w, lay = _page("Account")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(_w)
        self.info_label = QLabel("")
        self.info_label.setWordWrap(True)
        self.info_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.info_label)
        # Which verification rule is in force, and what this account weighs in it.
        lay.addSpacing(6)
        lay.addWidget(QLabel("<b>Verification</b>"))
        self.rule_label = QLabel("")
        self.rule_label.setObjectName("verification_rule")
        self.weight_label = QLabel("")
        self.weight_label.setObjectName("verification_weight")
        for lab in (self.rule_label, self.weight_label):
            lab.setWordWrap(True)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lay.addWidget(lab)
        lay.addSpacing(6)
        lay.addWidget(QLabel("<b>Nodes (computers) of this account</b>"))
        self.nodes = _table(["Node key", "State", ""])
        self.nodes.horizontalHeader().setStretchLastSection(False)
        self.nodes.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        lay.addWidget(self.nodes, 1)
        buttons = QHBoxLayout()
        self.export_button = QPushButton("Export account…")
        self.passphrase_button = QPushButton("Change passphrase…")
        self.backup_button = QPushButton("Back up profile…")
        self.backup_button.setToolTip(
            "Keys (still encrypted), ledger, settings and checkpoints in one file; "
            "safe while Hailstone computes"
        )
        self.restore_button = QPushButton("Restore a backup…")
        self.restore_button.setToolTip("Unpack a backup into a new, empty profile folder")
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.passphrase_button)
        buttons.addWidget(self.backup_button)
        buttons.addWidget(self.restore_button)
        buttons.addStretch(1)
        lay.addLayout(buttons)
        self.export_button.clicked.connect(self._ask_export)
        self.passphrase_button.clicked.connect(self._ask_change)
        self.backup_button.clicked.connect(self._ask_backup)
        self.restore_button.clicked.connect(self._ask_restore)
        self.busy = False
        ctl.network_status.connect(self.on_status)
        self.refresh()

    @Slot(object)
    def on_status(self, status: Any) -> None:
        rule, weight = verification_text(status)
        self.rule_label.setText(rule)
        self.weight_label.setText(weight)
        self.weight_label.setVisible(bool(weight))

    def _show_verification(self) -> None:
        status = self.ctl.last_status
        if status is None:  # no network status yet: the rule the settings name
            genesis, beacons = trust_root(self.ctl.settings.values(), self.ctl.node_overrides)
            status = BridgeStatus(False, "", trust_genesis=genesis, trust_beacons=beacons)
        self.on_status(status)

    def refresh(self) -> None:
        self._show_verification()
        if self.accounts is None or not self.accounts.has_account():
            self.info_label.setText(
                "No account on this computer. Accounts come with the network layer; "
                "until you create one, Hailstone computes in solo mode and keeps results locally."
                if self.accounts is None
                else "No account in this profile yet. Run the setup again to create or import one."
            )
            self.export_button.setEnabled(False)
            self.passphrase_button.setEnabled(False)
            self.backup_button.setEnabled(False)
            self.restore_button.setEnabled(self.accounts is not None)
            self.nodes.setRowCount(0)
            return
        info = self.accounts.info()
        self.info_label.setText(
            f"Username: <b>{info.get('username', '?')}</b><br>Account key: {info.get('account', '')[:32]}…"
        )
        self.export_button.setEnabled(True)
        self.passphrase_button.setEnabled(True)
        self.backup_button.setEnabled(True)
        self.restore_button.setEnabled(True)
        nodes = self.accounts.nodes()
        self.nodes.setRowCount(len(nodes))
        for i, (node_hex, revoked, mine) in enumerate(nodes):
            self.nodes.setItem(i, 0, QTableWidgetItem(node_hex[:24] + "…"))
            self.nodes.setItem(
                i,
                1,
                QTableWidgetItem(
                    ("revoked" if revoked else "active") + (" (this computer)" if mine else "")
                ),
            )
            cell, b = _cell_button("Revoke")
            b.setEnabled(not revoked)
            b.clicked.connect(lambda _c=False, n=node_hex: self._ask_revoke(n))
            self.nodes.setCellWidget(i, 2, cell)

    def showEvent(self, event: Any) -> None:  # Qt override: the wizard may have made one since
        self.refresh()
        super().showEvent(event)

    def _passphrase(self, prompt: str) -> str | None:
        text, ok = QInputDialog.getText(self, "Hailstone", prompt, QLineEdit.EchoMode.Password)
        return text if ok else None

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export account", str(Path.home() / "hailstone-account.key")
        )
        if not path:
            return
        pw = self._passphrase("Passphrase of the account:")
        if pw is not None:
            self.export_to(Path(path), pw)

    def _ask_change(self) -> None:
        old = self._passphrase("Current passphrase:")
        if old is None:
            return
        new = self._passphrase("New passphrase (at least 8 characters):")
        again = self._passphrase("New passphrase again:") if new is not None else None
        if new is None or again is None:
            return
        if new != again:
            QMessageBox.warning(
                self, "Hailstone", "The two new passphrases differ; nothing was changed."
            )
            return
        self.change_passphrase(old, new)

    def _ask_revoke(self, node_hex: str) -> None:
        pw = self._passphrase("Revoking a node stops its future work from counting. Passphrase:")
        if pw is not None:
            self._run(lambda: self.accounts.revoke(pw, node_hex), "Node revoked.")

    def _ask_backup(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Back up profile", str(Path.home() / "hailstone-backup.tar.gz")
        )
        if path:
            self.backup_to(Path(path))

    def _ask_restore(self) -> None:
        backup, _ = QFileDialog.getOpenFileName(self, "Restore a backup", str(Path.home()))
        if not backup:
            return
        target = QFileDialog.getExistingDirectory(
            self, "New, empty folder for the restored profile"
        )
        if target:
            self.restore_into(Path(backup), Path(target))

    def backup_to(self, path: Path) -> None:
        self._run(
            lambda: self.accounts.backup(path),
            f"Profile backed up to {path}. The account key inside is still encrypted; "
            "node.secret is not: keep the file private.",
        )

    def restore_into(self, backup: Path, target: Path) -> None:
        # The running profile is never overwritten: the backup becomes a new one.
        self._run(
            lambda: self.accounts.restore(backup, target),
            f"Backup restored into {target}. Start Hailstone with --data-dir {target} "
            "to use it, in place of the profile it was taken from.",
        )

    def export_to(self, path: Path, passphrase: str) -> None:
        self._run(
            lambda: self.accounts.export_file(passphrase, path), f"Account exported to {path}."
        )

    def change_passphrase(self, old: str, new: str) -> None:
        self._run(lambda: self.accounts.change_passphrase(old, new), "Passphrase changed.")

    def _run(self, fn: Any, done_text: str) -> None:
        self.busy = True
        self.setEnabled(False)
        self._job = run_job(fn, lambda _r: self._done(done_text), self._failed)

    def _done(self, text: str) -> None:
        self.busy = False
        self.setEnabled(True)
        self.ctl.main_status(text, "account")  # a success says so, not only the log
        self.refresh()

    def _failed(self, exc: Exception) -> None:
        self.busy = False
        self.setEnabled(True)
        code = getattr(exc, "code", "")
        if code == "wrong_passphrase":
            self.ctl.show("wrong_passphrase", source="account")
        elif isinstance(exc, OSError):
            self.ctl.show(*classify_exception(exc), source="account")
        else:
            # Through app/messages.py like every message: one readable sentence.
            detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.ctl.show("account_error", str(detail), source="account")


# ---- event log -------------------------------------------------------------------------------


class EventLogPage(QWidget):
    """Every user-visible message, with a level filter and a text search."""

    FILTERS = (
        ("All", ("info", "warning", "error")),
        ("Notices (verified units, disputes, candidates)", ("notice",)),
        ("Warnings and errors", ("warning", "error")),
        ("Errors", ("error",)),
    )

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        _w, lay = _page("Event log")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(_w)
        bar = QHBoxLayout()
        self.filter = QComboBox()
        for title, _levels in self.FILTERS:
            self.filter.addItem(title)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search…")
        self.search.setClearButtonEnabled(True)
        bar.addWidget(QLabel("Show:"))
        bar.addWidget(self.filter)
        bar.addWidget(self.search, 1)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the selected lines (or all shown lines) as text")
        self.save_button = QPushButton("Save as…")
        self.save_button.setToolTip("Save the shown lines to a text file")
        bar.addWidget(self.copy_button)
        bar.addWidget(self.save_button)
        self.copy_button.clicked.connect(self.copy)
        self.save_button.clicked.connect(self._ask_save)
        lay.addLayout(bar)
        self.table = _table(["Time", "Level", "Source", "Message"])
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(True)
        lay.addWidget(self.table, 1)
        self.filter.currentIndexChanged.connect(self.apply_filter)
        self.search.textChanged.connect(self.apply_filter)
        for e in ctl.events.entries:
            self.add(e)
        ctl.events.added.connect(self.add)

    @Slot(object)
    def add(self, e: Entry) -> None:
        # Bounded like the EventLog itself: the oldest rows go first.
        excess = self.table.rowCount() - (MAX_ENTRIES - 1)
        for _ in range(max(0, excess)):
            self.table.removeRow(0)
        scroll = self.table.verticalScrollBar()
        at_end = scroll.value() >= scroll.maximum() - 2
        row = self.table.rowCount()
        self.table.insertRow(row)
        vals = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at)), e.level, e.source, e.text)
        for j, v in enumerate(vals):
            self.table.setItem(row, j, QTableWidgetItem(v))
        self._apply_row(row)
        if at_end:  # follow new lines, unless the reader scrolled back
            self.table.scrollToBottom()

    def text_lines(self, selected_only: bool = False) -> list[str]:
        """The shown lines (or the selected ones) as tab-separated text."""
        rows = sorted({i.row() for i in self.table.selectedIndexes()}) if selected_only else []
        rows = rows or [r for r in range(self.table.rowCount()) if not self.table.isRowHidden(r)]
        return [
            "\t".join(self.table.item(r, j).text() for j in range(4))
            for r in rows
            if not self.table.isRowHidden(r)
        ]

    @Slot()
    def copy(self) -> None:
        lines = self.text_lines(selected_only=True)
        QGuiApplication.clipboard().setText("\n".join(lines) + "\n")
        self.ctl.main_status(f"{len(lines)} event log line{'s' if len(lines) != 1 else ''} copied.")

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the event log", str(Path.home() / "hailstone-events.txt")
        )
        if path:
            self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        lines = self.text_lines()
        try:
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        except OSError as exc:
            self.ctl.show(*classify_exception(exc), source="app")
            return False
        self.ctl.main_status(f"Event log saved to {path} ({len(lines)} lines).")
        return True

    def _apply_row(self, row: int) -> None:
        levels = self.FILTERS[self.filter.currentIndex()][1]
        needle = self.search.text().strip().lower()
        level = self.table.item(row, 1).text()
        source = self.table.item(row, 2).text()
        text = " ".join(self.table.item(row, j).text() for j in range(4)).lower()
        # "Notices" is a source (verified units, disputes, candidates), not a level.
        wanted = source == "notice" if levels == ("notice",) else level in levels
        self.table.setRowHidden(row, bool(not wanted or (needle and needle not in text)))

    @Slot()
    def apply_filter(self) -> None:
        for row in range(self.table.rowCount()):
            self._apply_row(row)

    def visible_texts(self) -> list[str]:
        return [
            self.table.item(r, 3).text()
            for r in range(self.table.rowCount())
            if not self.table.isRowHidden(r)
        ]
