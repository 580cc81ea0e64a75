"""Screenshots of every page, wizard page and the tray menu, from a real demo run.

The demo profile lives in a temporary folder, runs solo on the dev parameter
set and really computes for a while before the pages are captured. Runs on
the offscreen platform when there is no display (or on Xvfb if DISPLAY is set).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

PASS = "correct horse battery staple"


def _wait(app, cond, timeout_s: float) -> bool:
    from PySide6.QtCore import QEventLoop

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if cond():
            return True
    return cond()


def main(out: str | Path, seconds: float = 20.0) -> int:
    """Save the PNGs into `out`; returns 0 on success."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.application import HailstoneApp
    from engine import DEV

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Hailstone")
    saved = []

    def save(widget, name: str) -> None:
        path = out / f"{name}.png"
        widget.grab().save(str(path))
        saved.append(path)

    with tempfile.TemporaryDirectory(prefix="hailstone-demo-") as tmp:
        try:
            from network.keystore import MIN as limits
        except ImportError:
            limits = None
        hs = HailstoneApp(Path(tmp), params=DEV, try_network=False, kdf_limits=limits)
        hs.launch()
        wiz = hs.wizard
        assert wiz is not None
        _wait(app, lambda: wiz.isVisible(), 5)
        page = wiz.account
        if page.accounts is not None:
            page.username.setText("demo-volunteer")
            page.passphrase.setText(PASS)
            page.passphrase2.setText(PASS)
        save(wiz, "wizard-1-account")
        wiz.next()
        _wait(app, lambda: wiz.currentPage() is wiz.compute, 30)
        _wait(app, lambda: not wiz.compute.gpu_note.text().startswith("Looking"), 30)
        save(wiz, "wizard-2-compute")
        wiz.next()
        save(wiz, "wizard-3-network")
        wiz.network.rpc.setChecked(True)
        wiz.network.test()
        _wait(app, lambda: wiz.network._job is None, 10)
        save(wiz, "wizard-3b-network-kubo-test")
        wiz.network.embedded.setChecked(True)
        wiz.next()
        save(wiz, "wizard-4-finish")
        wiz.accept()
        _wait(app, lambda: False, seconds)  # let it really compute for a while
        win = hs.window
        for title in (
            "Dashboard",
            "History",
            "Network",
            "Leaderboard",
            "Account",
            "Preferences",
            "Event log",
        ):
            win.show_page(title)
            _wait(app, lambda: False, 0.6)
            save(win, "page-" + title.lower().replace(" ", "-"))
        win.show_page("Dashboard")
        win.pages["Dashboard"].set_view(1)
        _wait(app, lambda: False, 0.6)
        save(win, "page-dashboard-24h")
        menu = win.tray.menu
        menu.popup(win.mapToGlobal(win.rect().center()))
        _wait(app, lambda: False, 0.3)
        save(menu, "tray-menu")
        menu.hide()
        hs.shutdown()
    for p in saved:
        print(p)
    return 0
