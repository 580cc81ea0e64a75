"""Putting the app together: data folder, logging, single instance, wizard or window."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QApplication, QInputDialog, QLineEdit

from app import network_bridge, theme
from app.controller import AppController
from app.mainwindow import MainWindow
from app.signals import StopSignals
from app.single_instance import claim_profile
from app.wizard import SetupWizard
from app.workers import run_job
from engine import Params

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """The per-user profile folder, the same one the CLI uses (network/profile_dir.py).

    An old profile from QStandardPaths' AppDataLocation is moved there on first use.
    """
    return network_bridge.default_data_dir()


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


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


def make_excepthook(
    ctl: AppController | None,
) -> Callable[[type[BaseException], BaseException, TracebackType | None], None]:
    """A sys.excepthook: the traceback goes to the log file, the user gets one sentence.

    An exception escaping a Qt slot lands here; the app keeps running, and the
    user never sees a raw traceback.
    """

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log.error("unexpected error", exc_info=(exc_type, exc, tb))
        if ctl is not None:
            ctl.show("unexpected_error", f"{exc_type.__name__}: {exc}")

    return hook


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
        theme.apply_scheme(str(self.ctl.settings["theme"]))  # light/dark chosen in the app
        self.window = MainWindow(self.ctl)
        self.wizard: SetupWizard | None = None
        self.minimized = minimized or bool(self.ctl.settings["start_minimized"])
        self.ctl.act_quit.triggered.connect(self.quit)
        self._unlock_job: Any = None
        self._wizard_open = False

    def launch(self) -> None:
        """Show the wizard on first run; otherwise unlock the node key, then compute."""
        if not self.ctl.is_set_up():
            self.wizard = SetupWizard(self.ctl)
            self.wizard.accepted.connect(self.window.show)
            self.wizard.rejected.connect(self.quit)
            self.wizard.finished.connect(self._wizard_finished)
            self._wizard_open = True
            self.wizard.show()
            return
        if not self.minimized:
            self.window.show()
        elif not self.window.tray.available:
            self.window.showMinimized()
        accounts = self.ctl.accounts()
        if accounts is not None and accounts.has_account():
            # Open the node key once, off the GUI thread, before the node starts
            # (the node would otherwise fail on it later with a vaguer error).
            self._unlock_job = run_job(accounts.unlock_node, self._unlocked, self._unlock_failed)
        else:
            self.ctl.start_engine()

    @Slot()
    def bring_to_front(self) -> None:
        """Another launch asked for this copy: the wizard while it runs, else the window."""
        if self.wizard is not None and self._wizard_open:
            self.wizard.showNormal()
            self.wizard.raise_()
            self.wizard.activateWindow()
            return
        self.window.bring_to_front()

    @Slot(int)
    def _wizard_finished(self, _result: int) -> None:
        self._wizard_open = False

    @Slot(object)
    def _unlocked(self, node: bytes) -> None:
        self._unlock_job = None
        self.ctl.note(f"Node key {node.hex()[:16]}… unlocked.", "account")
        if not self.window.quitting:
            self.ctl.start_engine()

    @Slot(object)
    def _unlock_failed(self, exc: Exception) -> None:
        self._unlock_job = None
        log.warning("node key not opened", exc_info=exc)
        detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        self.ctl.show("node_key_locked", str(detail), "account")
        if self.window.quitting:
            return
        # The account passphrase can authorise a fresh node key for this machine.
        passphrase, ok = QInputDialog.getText(
            self.window,
            "Unlock Hailstone",
            "This computer's node key could not be opened.\n"
            "Enter your account passphrase to authorise a new one\n"
            "(Cancel computes alone, without the network):",
            QLineEdit.EchoMode.Password,
        )
        accounts = self.ctl.accounts()
        if ok and passphrase and accounts is not None:
            self._unlock_job = run_job(
                lambda: accounts.reauthorize_node(passphrase), self._unlocked, self._reauthorize_failed
            )
            return
        # Computing goes on: the node falls back to solo mode and says why.
        self.ctl.start_engine()

    @Slot(object)
    def _reauthorize_failed(self, exc: Exception) -> None:
        self._unlock_job = None
        log.warning("node key not re-authorised", exc_info=exc)
        code = getattr(exc, "code", "")
        if code == "wrong_passphrase":
            self.ctl.show("wrong_passphrase", "", "account")
        else:
            self.ctl.show("node_key_locked", str(getattr(exc, "message", exc)), "account")
        if not self.window.quitting:
            self.ctl.start_engine()

    @Slot(object)
    def session_ending(self, *_manager: Any) -> None:
        """The session manager asks for data to be committed (logout, shutdown).

        From now on a close is accepted without hiding to the tray or asking: a
        window that refuses to close would hold up the logout. Nothing quits here
        (the same request can come for a session checkpoint); the session's close
        or SIGTERM ends the app, through the usual clean shutdown.
        """
        self.window.quitting = True

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


def run_gui(args: Any, **app_kw: Any) -> int:
    """Open the desktop app; returns the exit status (0 after Quit, SIGTERM or SIGINT).

    Args:
        args: the parsed command line (data_dir, params, minimized).
        app_kw: HailstoneApp keywords that win over the command line (the signal
            test runs a real process on loopback with its own parameters).
    """
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Hailstone")
    app.setOrganizationName("Hailstone")
    app.setApplicationDisplayName("Hailstone")
    # Wayland's app id: the shell matches it to hailstone.desktop for the dock icon.
    app.setDesktopFileName("hailstone")
    data_dir = Path(args.data_dir) if getattr(args, "data_dir", None) else default_data_dir()
    # A login entry written by an older version names the old GUI folder: the
    # profile moved, so follow it (and rewrite the entry below).
    old_login_entry = getattr(args, "data_dir", None) and _same_path(
        data_dir, network_bridge.legacy_gui_data_dir()
    )
    if old_login_entry:
        data_dir = default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(data_dir)
    single = claim_profile(data_dir)
    if single is None:
        print("Hailstone is already running on this profile; its window was brought to the front.")
        return 0
    sys.excepthook = make_excepthook(None)  # until the controller exists
    params = None
    if getattr(args, "params", None):
        from engine import by_name

        params = by_name(args.params)
    kw: dict[str, Any] = {"params": params, "minimized": bool(getattr(args, "minimized", False))}
    kw.update(app_kw)
    hs = HailstoneApp(data_dir, **kw)
    sys.excepthook = make_excepthook(hs.ctl)
    moved = network_bridge.last_migration()
    if moved is not None and moved.note:
        hs.ctl.note(moved.note, "app", "info" if moved.moved else "warning")
    if old_login_entry and hs.ctl.settings["start_at_login"]:
        hs.ctl.apply_start_at_login(True)
    single.raise_requested.connect(hs.bring_to_front)
    # Logout, shutdown and Ctrl-C stop the app like Quit (checkpoint kept); the
    # embedded IPFS node takes the handlers when it starts, so they go back then.
    stops = StopSignals()
    stops.received.connect(hs.quit)
    hs.ctl.network_started.connect(stops.reinstall)
    app.commitDataRequest.connect(hs.session_ending)
    # The tray (re-checked on a timer) keeps setQuitOnLastWindowClosed up to date.
    app.aboutToQuit.connect(hs.shutdown)
    hs.launch()
    try:
        code = app.exec()
    finally:
        stops.close()
        single.close()
        sys.excepthook = sys.__excepthook__
    return int(code)
