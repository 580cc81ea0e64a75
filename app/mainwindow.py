"""The main window (pages in a side list) and the tray icon."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSizePolicy,
    QStackedWidget,
    QSystemTrayIcon,
    QToolBar,
    QToolButton,
    QWidget,
)

from app.about import AboutPage
from app.controller import AppController
from app.messages import Message
from app.pages import (
    AccountPage,
    DashboardPage,
    EventLogPage,
    HistoryPage,
    LeaderboardPage,
    NetworkPage,
    fmt_rate,
)
from app.preferences import PreferencesPage
from app.theme import icon, state_icon
from app.widgets import ElidedLabel

PAGES = (
    ("Dashboard", "page-dashboard", DashboardPage),
    ("History", "page-history", HistoryPage),
    ("Network", "page-network", NetworkPage),
    ("Leaderboard", "page-leaderboard", LeaderboardPage),
    ("Account", "page-account", AccountPage),
    ("Preferences", "page-preferences", PreferencesPage),
    ("Event log", "page-log", EventLogPage),
    ("About", "page-about", AboutPage),
)


# Messages worth a desktop notification besides errors (a possible historic finding).
NOTIFY_CODES = ("candidate", "dispute_against_you")

# A tray can appear after the app started (a panel restarted, a session still
# loading at login) or go away: look again this often.
TRAY_CHECK_MS = 5000


class Tray:
    """The tray icon and its menu, built from the controller's shared actions.

    Args:
        ctl: the controller (actions, state, rates).
        window: the main window (parent of the re-check timer).
        available: whether the desktop has a tray now (tests pass their own).
    """

    def __init__(
        self,
        ctl: AppController,
        window: MainWindow,
        available: Callable[[], bool] = QSystemTrayIcon.isSystemTrayAvailable,
    ) -> None:
        self.ctl = ctl
        self.menu = QMenu()
        self.menu.addAction(ctl.act_open)
        self.menu.addSeparator()
        self.menu.addAction(ctl.act_pause)
        self.menu.addAction(ctl.act_resume)
        self.snooze_menu = self.menu.addMenu("Snooze")
        for a in ctl.snooze_actions:
            self.snooze_menu.addAction(a)
        self.snooze_menu.addSeparator()
        self.snooze_menu.addAction(ctl.act_unsnooze)
        self.menu.addSeparator()
        self.menu.addAction(ctl.act_quit)
        self.icon: QSystemTrayIcon | None = None
        self._shown_state = ""
        self._available = available
        self.window = window
        self.check()
        self.timer = QTimer(window)
        self.timer.setInterval(TRAY_CHECK_MS)
        self.timer.timeout.connect(self.check)
        self.timer.start()
        ctl.state_changed.connect(self.update)
        ctl.sampled.connect(self.update)
        self.update()

    @property
    def available(self) -> bool:
        return self.icon is not None

    @Slot()
    def check(self) -> None:
        """Show the icon when a tray exists now, drop it when the tray went away."""
        if self._available() and self.icon is None:
            # Owned by the window, so it has one owner and goes one way
            # (deleteLater below). Unparented, Python owned it and deleted it
            # the moment its wrapper died, with a deleteLater still queued.
            self.icon = QSystemTrayIcon(state_icon(self.ctl.state[0]), self.window)
            self._shown_state = self.ctl.state[0]
            self.icon.setContextMenu(self.menu)
            self.icon.activated.connect(self._activated)
            self.icon.setToolTip(self.tooltip())
            self.icon.show()
        elif not self._available() and self.icon is not None:
            icon, self.icon = self.icon, None
            icon.hide()
            icon.deleteLater()
        # Without a tray, closing the last window must quit (nothing could reopen it).
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.setQuitOnLastWindowClosed(self.icon is None)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.ctl.act_open.trigger()

    def tooltip(self) -> str:
        state, reason = self.ctl.state
        rate = self.ctl.rates.total(time.monotonic())
        text = {
            "computing": f"Computing at {fmt_rate(rate)}",
            "syncing": "Catching up with the network…",
        }.get(state, state.capitalize())
        if reason and state in ("waiting", "paused", "error", "preparing"):
            text += f" ({reason})"
        return f"Hailstone — {text}"

    @Slot()
    def update(self, *_args: Any) -> None:
        if self.icon is not None:
            state = self.ctl.state[0]
            if state != self._shown_state:  # only a new state needs a new icon
                self._shown_state = state
                self.icon.setIcon(state_icon(state))
            self.icon.setToolTip(self.tooltip())

    def hide(self) -> None:
        self.timer.stop()
        if self.icon is not None:
            self.icon.hide()


PREFERRED_SIZE = (1000, 680)


def initial_size(widget: QWidget) -> tuple[int, int]:
    """The preferred size, shrunk to fit the screen's free area (at 150 % scaling a
    1366×768 screen has 911×512 logical pixels, less panels and the title bar)."""
    screen = widget.screen() or QApplication.primaryScreen()
    w, h = PREFERRED_SIZE
    if screen is None:
        return w, h
    free = screen.availableGeometry()
    return min(w, int(free.width() * 0.95)), min(h, int(free.height() * 0.88))


class MainWindow(QMainWindow):
    """Pages in a side list; closing hides to the tray only when there is one."""

    def __init__(
        self,
        ctl: AppController,
        tray_available: Callable[[], bool] = QSystemTrayIcon.isSystemTrayAvailable,
    ) -> None:
        super().__init__()
        self.ctl = ctl
        self.quitting = False
        self._told_about_tray = False
        self.close_box: QMessageBox | None = None
        self.setWindowTitle("Hailstone")
        self.setWindowIcon(icon("hailstone"))
        self.resize(*initial_size(self))
        central = QWidget()
        lay = QHBoxLayout(central)
        self.nav = QListWidget()
        self.nav.setIconSize(QSize(20, 20))
        self.nav.setFixedWidth(170)
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {}
        for title, icon_name, cls in PAGES:
            page = cls(ctl)
            self.pages[title] = page
            self.stack.addWidget(page)
            QListWidgetItem(icon(icon_name), title, self.nav)
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.nav.setCurrentRow(0)
        lay.addWidget(self.nav)
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        # Messages and the network line share the status bar; both elide instead of
        # widening the window or drawing over each other (the full text is the tooltip).
        self.message_label = ElidedLabel("")
        self.statusBar().addWidget(self.message_label, 3)
        self._message_timer = QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(lambda: self.message_label.setText(""))
        # The network line is a permanent widget: its updates every second must not
        # wipe a message.
        self.network_label = ElidedLabel(ctl.network_text(), min_width=120)
        self.statusBar().addPermanentWidget(self.network_label, 2)
        self.tray = Tray(ctl, self, tray_available)
        self.controls = self._make_controls()
        ctl.act_open.triggered.connect(self.bring_to_front)
        ctl.message_shown.connect(self.on_message)
        ctl.status_text.connect(self.on_status_text)
        ctl.state_changed.connect(self.on_state)
        ctl.network_status.connect(self.on_network_status)

    def _make_controls(self) -> QToolBar:
        """Pause, Resume, Snooze and Quit in the window itself: many desktops
        (GNOME by default) have no tray, and the tray menu is then out of reach."""
        bar = QToolBar("Controls")
        bar.setObjectName("controls")
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        bar.setIconSize(QSize(18, 18))
        bar.addAction(self.ctl.act_pause)
        bar.addAction(self.ctl.act_resume)
        self.snooze_button = QToolButton()
        self.snooze_button.setText("Snooze")
        self.snooze_button.setToolTip("Pause for a while; computing resumes by itself")
        self.snooze_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.snooze_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.snooze_button.setMenu(self.tray.snooze_menu)
        bar.addWidget(self.snooze_button)
        self.control_state = QLabel("")
        self.control_state.setContentsMargins(12, 0, 12, 0)
        bar.addWidget(self.control_state)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar.addWidget(spacer)
        bar.addAction(self.ctl.act_quit)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.ctl.controls_changed.connect(self._update_controls)
        self._update_controls()
        return bar

    @Slot()
    def _update_controls(self) -> None:
        if self.ctl.user_paused:
            text = "Paused by you"
        elif self.ctl.snoozed():
            until = float(self.ctl.settings["snooze_until"])
            text = f"Snoozed until {time.strftime('%a %H:%M', time.localtime(until))}"
        else:
            text = ""
        self.control_state.setText(text)

    def show_page(self, title: str) -> None:
        self.nav.setCurrentRow([p[0] for p in PAGES].index(title))

    @Slot()
    def bring_to_front(self) -> None:
        self.showNormal()
        self.raise_()
        self.activateWindow()

    @Slot(object)
    def on_message(self, m: Message) -> None:
        # Messages go to the status bar (and the tray balloon for errors); the log keeps them all.
        self.show_status(m.text, 15000)
        if (m.severity == "error" or m.code in NOTIFY_CODES) and self.tray.icon is not None:
            self.tray.icon.showMessage("Hailstone", m.text, QSystemTrayIcon.MessageIcon.Warning)

    @Slot(str)
    def on_status_text(self, text: str) -> None:
        self.show_status(text, 10000)

    def show_status(self, text: str, timeout_ms: int) -> None:
        """A message in the status bar for `timeout_ms` (the event log keeps it)."""
        self.message_label.setText(text)
        self._message_timer.start(timeout_ms)

    @Slot(object)
    def on_network_status(self, status: Any) -> None:
        self.network_label.setText(status.text)

    @Slot(str, str)
    def on_state(self, state: str, _reason: str) -> None:
        self.setWindowIcon(icon("hailstone") if state != "error" else state_icon("error"))

    def closeEvent(self, event: QCloseEvent) -> None:  # Qt override
        if self.tray.available and not self.quitting:
            event.ignore()
            self.hide()
            text = (
                "Hailstone keeps computing in the background; open it from the tray icon, "
                "and choose Quit there to stop it."
            )
            self.ctl.note(text)
            if not self._told_about_tray and self.tray.icon is not None:
                # Once per run: a window that vanishes must say where the app went.
                self._told_about_tray = True
                self.tray.icon.showMessage(
                    "Hailstone", text, QSystemTrayIcon.MessageIcon.Information
                )
            return
        if not self.quitting and self.ctl.running:
            # No tray: closing would stop computing with nothing left on screen. Ask
            # (without blocking the event loop), and offer to minimise instead.
            event.ignore()
            self.ask_close()
            return
        event.accept()

    def ask_close(self) -> QMessageBox:
        """The no-tray close question: Minimise (the default), Quit or Cancel."""
        if self.close_box is not None and self.close_box.isVisible():
            return self.close_box
        box = QMessageBox(self)
        box.setWindowTitle("Close Hailstone?")
        box.setIcon(QMessageBox.Icon.Question)
        box.setText(
            "This desktop has no tray to keep Hailstone in, so closing the window stops "
            "computing until you start Hailstone again (the current unit's progress is "
            "kept). Minimise the window to keep computing."
        )
        minimise = box.addButton("Minimise", QMessageBox.ButtonRole.AcceptRole)
        quit_button = box.addButton("Quit", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(minimise)
        minimise.clicked.connect(self.showMinimized)
        quit_button.clicked.connect(self.quit_now)
        self.close_box = box
        box.open()
        return box

    @Slot()
    def quit_now(self) -> None:
        """Quit from the window (the app's Quit action when it is connected)."""
        self.quitting = True
        self.ctl.act_quit.trigger()
        self.close()

    def keyPressEvent(self, event: Any) -> None:  # Qt override
        if event.key() == Qt.Key.Key_Escape:
            return  # Esc must not close the main window
        super().keyPressEvent(event)
