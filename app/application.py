"""Putting the app together: data folder, logging, single instance, wizard or window."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QStandardPaths, Slot
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from app.controller import AppController
from app.mainwindow import MainWindow
from app.single_instance import SingleInstance, ask_running_instance
from app.wizard import SetupWizard
from app.workers import run_job
from engine import Params

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """The per-user data folder from QStandardPaths (AppDataLocation)."""
    QApplication.setOrganizationName("Hailstone")
    QApplication.setApplicationName("Hailstone")
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))


def setup_logging(data_dir: Path) -> logging.Handler:
    """Log to <data>/logs/hailstone.log (rotated); tracebacks go here, not to the user."""
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        logs / "hailstone.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


class HailstoneApp(QObject):
    """The controller, window and (first run) wizard for one profile.

    Args:
        data_dir: the profile folder.
        params: overrides the `params` setting (tests, demos, --params).
        try_network: False keeps the app solo.
        kdf_limits: key-derivation cost for new passphrases.
        minimized: start hidden (tray) or minimised.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        params: Params | None = None,
        try_network: bool = True,
        kdf_limits: Any = None,
        minimized: bool = False,
        **controller_kw: Any,
    ) -> None:
        super().__init__()
        self.ctl = AppController(
            data_dir, params=params, try_network=try_network, kdf_limits=kdf_limits, **controller_kw
        )
        self.window = MainWindow(self.ctl)
        self.wizard: SetupWizard | None = None
        self.minimized = minimized or bool(self.ctl.settings["start_minimized"])
        self.ctl.act_quit.triggered.connect(self.quit)
        self._unlock_job: Any = None

    def launch(self) -> None:
        """Show the wizard on first run; otherwise unlock and start computing."""
        if not self.ctl.is_set_up():
            self.wizard = SetupWizard(self.ctl)
            self.wizard.accepted.connect(self.window.show)
            self.wizard.rejected.connect(self.quit)
            self.wizard.show()
            return
        accounts = self.ctl.accounts()
        if accounts is not None and accounts.has_account():
            # The node key opens with the stored node secret: no passphrase prompt.
            self._unlock_job = run_job(accounts.unlock_node, self._unlocked, self._unlock_failed)
        self.ctl.start_engine()
        if not self.minimized:
            self.window.show()
        elif not self.window.tray.available:
            self.window.showMinimized()

    @Slot(object)
    def _unlocked(self, node: bytes) -> None:
        self.ctl.note(f"Node key {node.hex()[:16]}… unlocked.", "account")

    @Slot(object)
    def _unlock_failed(self, exc: Exception) -> None:
        self.ctl.note(f"The node key could not be opened: {exc}", "account", "error")

    @Slot()
    def quit(self) -> None:
        self.window.quitting = True
        self.shutdown()
        app = QApplication.instance()
        if app is not None:
            app.quit()

    def shutdown(self) -> None:
        """Stop the workers and close the windows (idempotent)."""
        self.ctl.shutdown()
        self.window.tray.hide()
        if self.wizard is not None:
            self.wizard.hide()
        self.window.quitting = True
        self.window.close()


def run_gui(args: Any) -> int:
    """Open the desktop app; returns the exit status."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Hailstone")
    app.setOrganizationName("Hailstone")
    app.setApplicationDisplayName("Hailstone")
    data_dir = Path(args.data_dir) if getattr(args, "data_dir", None) else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(data_dir)
    if ask_running_instance(data_dir):
        print("Hailstone is already running; its window was brought to the front.")
        return 0
    single = SingleInstance(data_dir)
    if not single.listen():
        log.warning("single-instance server did not start: %s", single.server.errorString())
    params = None
    if getattr(args, "params", None):
        from engine import by_name

        params = by_name(args.params)
    hs = HailstoneApp(data_dir, params=params, minimized=bool(getattr(args, "minimized", False)))
    single.raise_requested.connect(hs.window.bring_to_front)
    app.setQuitOnLastWindowClosed(not QSystemTrayIcon.isSystemTrayAvailable())
    app.aboutToQuit.connect(hs.shutdown)
    hs.launch()
    code = app.exec()
    single.close()
    return int(code)
